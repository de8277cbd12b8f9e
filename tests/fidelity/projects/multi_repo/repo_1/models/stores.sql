MODEL (
  name bronze.stores,
  kind SEED (
    path '../seeds/stores.csv'
  ),
  columns (
    store_id INTEGER,
    city TEXT,
    opened_on DATE
  ),
  grain store_id
);
