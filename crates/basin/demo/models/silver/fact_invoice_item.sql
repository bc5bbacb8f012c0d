/* basin
materialized = "incremental"
unique_key = "invoice_item_id"
# Each night reads only the line items landed since the last build (the invoices and charge
# types they join are read whole) and merges them; `--full-refresh` rebuilds from everything.
incremental_from = "bronze_current.v3__invoice_item"
owner = "finance"
description = "One row per invoice line item, with its invoice date and charge type."

[[checks]]
type = "not_null"
columns = ["invoice_item_id", "invoice_id", "amount"]

# Every line charges for a known charge type: a line with an unknown one would vanish from
# revenue by charge type (`basin demo --inject-fault` plants such lines).
[[checks]]
type = "relationships"
column = "charge_type_id"
to = "silver.dim_charge_type"
*/
SELECT
    it.invoice_item_id,
    it.invoice_id,
    i.invoice_date,
    i.customer_id,
    it.service_id,
    it.charge_type_id,
    ct.code                               AS charge_code,
    ct.name                               AS charge_type,
    CAST(it.quantity AS DECIMAL(18, 3))   AS quantity,
    CAST(it.unit_price AS DECIMAL(18, 4)) AS unit_price,
    CAST(it.amount AS DECIMAL(18, 4))     AS amount
FROM bronze_current.v3__invoice_item it
LEFT JOIN bronze_current.v3__invoice i ON i.invoice_id = it.invoice_id
LEFT JOIN bronze_current.v3__charge_type ct ON ct.charge_type_id = it.charge_type_id
