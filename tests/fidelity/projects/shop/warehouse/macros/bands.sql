{% macro spend_band(amount) -%}
CASE WHEN {{ amount }} >= 100 THEN 'high' WHEN {{ amount }} >= 30 THEN 'mid' ELSE 'low' END
{%- endmacro %}
