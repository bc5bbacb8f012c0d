/* basin
materialized = "table"
owner = "finance"
description = "One row per invoice header: invoice + invoice_status + invoice_data, with the customer's partner."

[[checks]]
type = "unique"
columns = ["invoice_id"]

[[checks]]
type = "not_null"
columns = ["invoice_id", "customer_id", "invoice_date"]

[[checks]]
type = "accepted_values"
column = "status_code"
values = ["DRAFT", "OPEN", "PAID", "OVERDUE", "CANCELLED"]

# A data contract: what gold and BI tools rely on. Extra columns are fine; a renamed or
# retyped one fails the build's check instead of surprising a dashboard.
[[checks]]
type = "schema"
[checks.contract]
invoice_date = "DATE NOT NULL"
total_net = "DECIMAL(18,4)"
total_gross = "DECIMAL(18,4)"
is_paid = "BOOLEAN"
*/
SELECT
    i.invoice_id,
    i.customer_id,
    c.partner_id,
    i.invoice_date,
    i.period_start,
    i.period_end,
    s.code                                          AS status_code,
    s.label                                         AS status,
    s.code = 'PAID'                                 AS is_paid,
    CAST(i.total_net AS DECIMAL(18, 4))             AS total_net,
    CAST(i.total_vat AS DECIMAL(18, 4))             AS total_vat,
    CAST(i.total_net + i.total_vat AS DECIMAL(18, 4)) AS total_gross,
    d.payment_method,
    d.dunning_level,
    d.due_date,
    d.paid_on,                                      -- '0000-00-00' (unpaid) arrives as NULL
    d."DocRef"                                      AS document_ref,  -- legacy names need quotes
    i.created_at,
    i.updated_at
FROM bronze_current.v3__invoice i
LEFT JOIN bronze_current.v3__invoice_status s ON s.invoice_status_id = i.invoice_status_id
LEFT JOIN bronze_current.v3__invoice_data d ON d.invoice_id = i.invoice_id
LEFT JOIN bronze_current.v3__customer c ON c.customer_id = i.customer_id
