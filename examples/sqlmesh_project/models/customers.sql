MODEL (
  name sqlmesh_example.customers,
  kind FULL,
  grain (customer_id),
  description 'Customers from the CRM export (external table raw.customers).',
  owner 'crm-team'
);

SELECT
  customer_id::INTEGER AS customer_id,
  name::TEXT AS customer_name,
  tier::TEXT AS tier
FROM raw.customers
