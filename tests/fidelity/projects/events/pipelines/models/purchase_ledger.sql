MODEL (
  name events.purchase_ledger,
  kind CUSTOM (
    materialization 'replace_by_insert'
  ),
  grain event_id,
  audits (
    number_of_rows(threshold := 1)
  )
);

SELECT
  event_id,
  user_id,
  event_date,
  duration_s AS checkout_seconds
FROM events.raw_events
WHERE
  event_type = 'purchase'
