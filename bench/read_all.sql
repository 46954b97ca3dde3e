\set p random(:first_position, :last_position)
SELECT * FROM event_store.read_all(:p, 1000);
