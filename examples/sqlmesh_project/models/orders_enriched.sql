MODEL (
  name sqlmesh_example.orders_enriched,
  kind FULL,
  grain (order_id),
  description 'Orders joined to their customer.'
);

SELECT
  o.order_id,
  o.order_date,
  o.amount,
  c.customer_id,
  c.customer_name,
  c.tier
FROM sqlmesh_example.incremental_orders AS o
JOIN sqlmesh_example.customers AS c
  ON o.customer_id = c.customer_id
