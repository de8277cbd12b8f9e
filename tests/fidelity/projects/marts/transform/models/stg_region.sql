MODEL (
  name staging.stg_payments_@{region},
  kind FULL,
  blueprints (
    (region := emea, code := 'EU'),
    (region := amer, code := 'US')
  ),
  grain payment_id
);

SELECT
  payment_id,
  customer,
  paid_on,
  amount_cents
FROM staging.payments_seed
WHERE
  region_code = @code
