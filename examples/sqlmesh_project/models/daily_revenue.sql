MODEL (
  name sqlmesh_example.daily_revenue,
  kind FULL,
  grain (order_date),
  description 'Revenue per day.'
);

SELECT
  order_date,
  SUM(amount)::DOUBLE AS revenue
FROM sqlmesh_example.orders_enriched
GROUP BY order_date
