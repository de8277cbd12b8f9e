MODEL (
  name events.engagement,
  kind VIEW
);

SELECT
  engaged,
  COUNT(*) AS users,
  SUM(purchases) AS purchases
FROM events.user_summary
GROUP BY engaged
