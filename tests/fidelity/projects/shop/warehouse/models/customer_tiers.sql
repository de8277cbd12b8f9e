MODEL (
  name shop.customer_tiers,
  kind FULL,
  grain customer_id
);

JINJA_QUERY_BEGIN;
SELECT
  c.customer_id,
  c.tier,
  {{ spend_band('COALESCE(SUM(o.amount), 0)') }} AS spend_band
FROM shop.customers AS c
LEFT JOIN shop.daily_orders AS o
  ON c.customer_id = o.customer_id
GROUP BY c.customer_id, c.tier
JINJA_END;
