MODEL (
  name bronze.till_rows,
  kind SEED (
    path '../seeds/tills.csv'
  ),
  columns (
    till_id INTEGER,
    store_id INTEGER,
    sale_date DATE,
    amount DECIMAL(10, 2)
  ),
  grain till_id
);
