/* basin
# Type-2 history: when a tracked column changes in the source, the current version is closed
# (valid_to, is_current = false) and a new one opened, with the source's updated_at as the
# boundary. A customer erased from the source has its last version closed.
materialized = "scd2"
unique_key = "customer_id"
tracked = ["partner_id", "email", "phone", "status", "is_vip", "closed_on"]
updated_at = "updated_at"
owner = "data-team"
description = "Customers with their history (one row per version), with their partner's name. PII columns are tagged, so the SQL endpoint can mask them per role."
[columns.email]
tags = ["pii:email"]
[columns.phone]
tags = ["pii:phone"]
[columns.first_name]
tags = ["pii:name"]
[columns.last_name]
tags = ["pii:name"]
[columns.birth_date]
tags = ["pii:dob"]

[[checks]]
type = "unique"
columns = ["customer_id", "valid_from"]

[[checks]]
type = "accepted_values"
column = "status"
values = ["active", "suspended", "closed"]

# Contact data may be missing for a few customers, not for many.
[[checks]]
type = "null_rate"
columns = ["email"]
max = 0.01
severity = "warn"
*/
SELECT
    c.customer_id,
    c.partner_id,
    COALESCE(p.name, '(unknown partner)')  AS partner_name,
    c.first_name,
    c.last_name,
    c.email,
    c.phone,
    c.status,
    CAST(c.flg_vip AS BOOLEAN)                          AS is_vip,
    c.birth_date,                          -- '0000-00-00' in the source arrives as NULL
    c.dt_closed                            AS closed_on,
    CAST(c.created_at AS DATE)             AS created_on,
    c.updated_at
FROM bronze_current.v3__customer c
LEFT JOIN bronze_current.v3__partner p ON p.partner_id = c.partner_id
