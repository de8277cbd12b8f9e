MODEL (
  name sqlmesh_example.seed_orders,
  kind SEED (path '../seeds/orders.csv'),
  columns (
    order_id INTEGER,
    customer_id INTEGER,
    item_id INTEGER,
    amount DOUBLE,
    order_date DATE
  ),
  grain (order_id),
  description 'Orders as delivered by the shop export (seed).',
  owner 'data-platform'
);
