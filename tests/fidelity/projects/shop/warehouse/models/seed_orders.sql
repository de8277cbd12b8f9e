MODEL (
  name shop.seed_orders,
  kind SEED (
    path '../seeds/orders.csv'
  ),
  columns (
    order_id INTEGER,
    customer_id INTEGER,
    product_id INTEGER,
    order_date DATE,
    quantity INTEGER,
    unit_price_cents INTEGER
  ),
  grain order_id
);
