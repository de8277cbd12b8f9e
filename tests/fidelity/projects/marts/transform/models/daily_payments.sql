MODEL (
  name reporting.finance.daily_payments,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column paid_on,
    lookback 2
  ),
  signals (
    settled_after(days := 1)
  ),
  grain (paid_on, region)
);

SELECT
  paid_on,
  region,
  COUNT(*) AS payments,
  SUM(amount_cents) AS amount_cents,
  @VAR('currency') AS currency
FROM (
  SELECT paid_on, 'emea' AS region, amount_cents FROM staging.stg_payments_emea
  UNION ALL
  SELECT paid_on, 'amer' AS region, amount_cents FROM staging.stg_payments_amer
) AS p
WHERE
  paid_on BETWEEN @start_ds AND @end_ds
GROUP BY paid_on, region
