MODEL (
  name events.raw_events,
  kind SEED (
    path '../seeds/raw_events.csv'
  ),
  columns (
    event_id INTEGER,
    user_id INTEGER,
    event_type TEXT,
    event_date DATE,
    duration_s INTEGER
  ),
  grain event_id
);
