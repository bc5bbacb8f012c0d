/* basin
materialized = "table"
owner = "finance"
description = "Usage types of call records, with their group and unit as labels."
*/
SELECT
    u.usage_type_id,
    u.name          AS usage_type,
    g.name          AS usage_group,
    un.code         AS unit,
    CAST(u.flg_roaming AS BOOLEAN) AS is_roaming
FROM bronze_current.v3__usage_type u
LEFT JOIN bronze_current.v3__usage_type_group g ON g.usage_type_group_id = u.usage_type_group_id
LEFT JOIN bronze_current.v3__usage_unit un ON un.usage_unit_id = u.usage_unit_id
