MODEL (
  name events.business_day_events,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column event_date
  ),
  signals (
    business_days()
  ),
  grain event_id
);

SELECT
  event_id,
  user_id,
  event_type,
  event_date,
  @duration_bucket(duration_s) AS duration_bucket
FROM events.raw_events
WHERE
  event_date BETWEEN @start_ds AND @end_ds
