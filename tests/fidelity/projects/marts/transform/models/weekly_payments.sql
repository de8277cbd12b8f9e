MODEL (
  name reporting.finance.weekly_payments,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column week_start
  ),
  cron '@weekly',
  grain week_start
);

SELECT
  DATE_TRUNC('week', paid_on)::DATE AS week_start,
  SUM(payments) AS payments,
  SUM(amount_cents) AS amount_cents
FROM reporting.finance.daily_payments
WHERE
  paid_on BETWEEN @start_ds AND @end_ds
GROUP BY 1
