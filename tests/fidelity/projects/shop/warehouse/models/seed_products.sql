MODEL (
  name shop.seed_products,
  kind SEED (
    path '../seeds/products.csv'
  ),
  columns (
    product_id INTEGER,
    product_name TEXT,
    category TEXT
  ),
  grain product_id,
  audits (
    unique_values(columns := (product_id)),
    not_null(columns := (product_id, category))
  )
);
