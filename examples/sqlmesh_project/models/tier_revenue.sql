MODEL (
  name sqlmesh_example.tier_revenue,
  kind FULL,
  grain (tier),
  description 'Revenue per customer tier.'
);

SELECT
  tier,
  COUNT(DISTINCT customer_id)::INTEGER AS num_customers,
  SUM(amount)::DOUBLE AS revenue
FROM sqlmesh_example.orders_enriched
GROUP BY tier
