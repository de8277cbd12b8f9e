MODEL (
  name events.user_summary,
  kind FULL,
  grain user_id,
  audits (
    unique_values(columns := (user_id)),
    no_negative_seconds()
  )
);

@DEF(engaged_seconds, 60);

SELECT
  a.user_id,
  SUM(a.events) AS events,
  SUM(a.seconds) AS seconds,
  SUM(a.seconds) >= @engaged_seconds AS engaged,
  COUNT(p.event_id) AS purchases
FROM events.daily_activity AS a
LEFT JOIN events.purchase_ledger AS p
  ON a.user_id = p.user_id AND a.activity_date = p.event_date
GROUP BY a.user_id
