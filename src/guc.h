/*-------------------------------------------------------------------------
 *
 * guc.h
 *	  The extension's configuration parameters (guc.c), for the files that
 *	  read them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_GUC_H
#define ES_GUC_H

extern int	es_max_event_size;
extern int	es_max_append_events;
extern int	es_max_databases;
extern int	es_max_message_size;
extern char *es_databases;
extern int	es_relay_batch_size;
extern int	es_relay_naptime;
extern char *es_relay_role;
extern int	es_max_relay_workers;
extern int	es_restart_time;
extern int	es_relay_reference_ttl;
extern int	es_relay_idle_timeout;
extern void es_define_gucs(void);

#endif							/* ES_GUC_H */
