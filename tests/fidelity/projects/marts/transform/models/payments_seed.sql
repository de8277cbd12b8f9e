MODEL (
  name staging.payments_seed,
  kind SEED (
    path '../seeds/payments.csv',
    csv_settings (
      delimiter = ','
    )
  ),
  columns (
    payment_id INTEGER,
    customer TEXT,
    region_code TEXT,
    paid_on DATE,
    amount_cents INTEGER
  ),
  grain payment_id
);
