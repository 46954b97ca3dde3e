# Turn "scenario|side|value" lines into one table: the median of each side,
# their ratio, and the target of SPEC.md the scenario measures, if any.
function median(key,    n, i, j, t, v) {
    n = split(values[key], v, " ")
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    if (n == 0) return ""
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
# target: "ratio >= x", "ratio > x", "value < x", "value >= x"
function target(s) {
    if (s ~ /^append_event, 8 clients/) return "ratio >= 0.9"
    if (s ~ /^append 100 events/) return "ratio >= 0.8"
    if (s ~ /^read_stream of 100/) return "ratio >= 0.8"
    if (s ~ /^read_all batch of 1000/) return "ratio >= 0.9"
    if (s ~ /^catch-up:/) return "ratio >= 0.9"
    if (s ~ /^outbox_send_batch of 100/) return "ratio >= 3"
    if (s ~ /send\+consume vs SKIP LOCKED/) return "ratio >= 1"
    if (s ~ /vs SKIP LOCKED queue/) return "ratio >= 1"
    if (s ~ /while a transaction is open/) return "ratio >= 0.5"
    if (s ~ /vs PgQ/) return "ratio > 1"
    if (s ~ /p50_ms/) return "value < 2"
    if (s ~ /p99_ms/) return "value < 10"
    if (s ~ /moved by one worker/) return "value >= 20000"
    return ""
}
# "min-max" of a side's values
function range(key,    n, i, v, lo, hi) {
    n = split(values[key], v, " ")
    if (n < 2) return ""
    lo = v[1] + 0; hi = v[1] + 0
    for (i = 2; i <= n; i++) { if (v[i] + 0 < lo) lo = v[i] + 0; if (v[i] + 0 > hi) hi = v[i] + 0 }
    return sprintf("%.0f-%.0f", lo, hi)
}
function verdict(t, ratio, value,    parts) {
    if (t == "") return ""
    split(t, parts, " ")
    x = (parts[1] == "ratio") ? ratio : value
    if (x == "") return "?"
    if (parts[2] == ">=") return (x + 0 >= parts[3] + 0) ? "met" : "NOT met"
    if (parts[2] == ">") return (x + 0 > parts[3] + 0) ? "met" : "NOT met"
    if (parts[2] == "<") return (x + 0 < parts[3] + 0) ? "met" : "NOT met"
}
{
    key = $1 SUBSEP $2
    values[key] = values[key] " " $3
    if (!($1 in seen)) { seen[$1] = 1; order[++count] = $1 }
}
END {
    printf "| %-55s | %12s | %12s | %6s | %-16s | %s |\n", "scenario", "event_store", "baseline", "ratio", "target", "ranges (event_store; baseline)"
    printf "|%s|%s|%s|%s|%s|%s|\n", "---------------------------------------------------------", "--------------", "--------------", "--------", "------------------", "------"
    for (i = 1; i <= count; i++) {
        s = order[i]
        ours = median(s SUBSEP "ours"); base = median(s SUBSEP "base")
        ratio = (base != "" && base + 0 > 0) ? sprintf("%.2f", ours / base) : ""
        t = target(s)
        printf "| %-55s | %12s | %12s | %6s | %-16s | %s |\n", s,
            (ours == "" ? "" : sprintf("%.2f", ours)),
            (base == "" ? "" : sprintf("%.2f", base)),
            ratio, (t == "" ? "" : t " " verdict(t, ratio, ours)),
            range(s SUBSEP "ours") "; " range(s SUBSEP "base")
    }
}
