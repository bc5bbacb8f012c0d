/* basin
materialized = "table"
owner = "finance"
description = "Groups of usage types: voice, messaging, data."
*/
SELECT usage_type_group_id, name AS usage_group FROM bronze_current.v3__usage_type_group
