//! The move catalogue: every customer-scoped table in foreign-key order, with the columns of
//! its primary key after `tenant_id` (the keyset cursor of the copy) and the columns a
//! checksum leaves out. The SQL of the copy, the checksum and the plan is generated from it;
//! the plan refuses to start when the database holds a table with a `tenant_id` column that
//! is not listed here, so a table added later cannot be left behind silently.

/// One customer table.
pub(crate) struct Table {
    /// Name.
    pub(crate) name: &'static str,
    /// Key columns (after the tenant) and their SQL types, in primary-key order.
    key: &'static [(&'static str, &'static str)],
    /// Columns left out of the checksum: they differ by design between the regions (the
    /// tenant row's `region` and `frozen`; ciphertexts, compared by plaintext digest instead).
    skip: &'static [&'static str],
}

/// Every customer table, parents before children: the copy runs in this order, the purge
/// (`purge_moved_tenant`) in reverse.
pub(crate) const TABLES: [Table; 10] = [
    Table {
        name: "tenants",
        key: &[("tenant_id", "uuid")],
        skip: &["region", "frozen"],
    },
    Table {
        name: "roles",
        key: &[("id", "uuid")],
        skip: &[],
    },
    Table {
        name: "members",
        key: &[("id", "uuid")],
        skip: &[],
    },
    Table {
        name: "connections",
        key: &[("id", "uuid")],
        skip: &["credentials", "credentials_kid"],
    },
    Table {
        name: "workflows",
        key: &[("id", "uuid")],
        skip: &[],
    },
    Table {
        name: "executions",
        key: &[("id", "uuid")],
        skip: &[],
    },
    Table {
        name: "execution_logs",
        key: &[("execution_id", "uuid"), ("seq", "integer")],
        skip: &[],
    },
    Table {
        name: "configurations",
        key: &[("key", "text")],
        skip: &[],
    },
    Table {
        name: "jobs",
        key: &[("id", "uuid")],
        // A worker of the source region may still claim a job while the tenant is frozen
        // (the claim does not read the tenant row); its lease differs, its identity does not.
        skip: &["attempts", "lease_owner", "lease_until"],
    },
    Table {
        name: "audit_events",
        key: &[("id", "uuid")],
        skip: &[],
    },
];

/// The table named `name`, if it is in the catalogue.
pub(crate) fn find(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Tables of the database with a `tenant_id` column, for the completeness check.
pub(crate) const TENANT_TABLES_SQL: &str = "\
SELECT c.relname::text FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
 ORDER BY 1";

impl Table {
    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One batch after the cursor `$1` (a JSON array of the key's text values, or NULL), at
    /// most `$2` rows: `(row jsonb, key jsonb)`. Row-Level Security limits it to the tenant.
    pub(crate) fn export_sql(&self) -> String {
        let keys = self.key_list();
        let cursor = self
            .key
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| format!("($1->>{i})::{ty}"))
            .collect::<Vec<_>>()
            .join(", ");
        let as_text = self
            .key
            .iter()
            .map(|(c, _)| format!("t.{c}::text"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT to_jsonb(t) AS row, jsonb_build_array({as_text}) AS key FROM {name} t \
             WHERE $1::jsonb IS NULL OR ({keys}) > ({cursor}) ORDER BY {keys} LIMIT $2",
            name = self.name,
        )
    }

    /// Inserts the rows of the JSON array `$1` (every column), skipping rows already there:
    /// a batch copied twice (a resumed move) changes nothing.
    pub(crate) fn import_sql(&self) -> String {
        format!(
            "INSERT INTO {name} SELECT * FROM jsonb_populate_recordset(NULL::{name}, $1) \
             ON CONFLICT DO NOTHING",
            name = self.name
        )
    }

    /// `(rows bigint, sum text)`: the count and an order-independent sum of the first 64 bits
    /// of each row's MD5 over its canonical JSON (jsonb text: keys sorted, timestamps in the
    /// session's zone, which the caller sets to UTC), without the skipped columns.
    pub(crate) fn checksum_sql(&self) -> String {
        format!(
            "SELECT count(*)::bigint, coalesce(sum(('x' || left(md5((to_jsonb(t) - $1::text[])::text), 16))\
             ::bit(64)::bigint::numeric), 0)::text FROM {name} t",
            name = self.name
        )
    }

    /// The skipped columns, as the checksum's `$1`.
    pub(crate) fn skipped(&self) -> Vec<&'static str> {
        self.skip.to_vec()
    }

    /// `(rows, bytes)` of the tenant in this table.
    pub(crate) fn plan_sql(&self) -> String {
        format!(
            "SELECT count(*)::bigint, coalesce(sum(pg_column_size(t.*)), 0)::bigint FROM {name} t",
            name = self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_sql_compares_the_whole_key() {
        let logs = find("execution_logs").unwrap();
        let sql = logs.export_sql();
        assert!(
            sql.contains("(execution_id, seq) > (($1->>0)::uuid, ($1->>1)::integer)"),
            "{sql}"
        );
        assert!(sql.contains("ORDER BY execution_id, seq LIMIT $2"), "{sql}");
        assert!(find("connectors").is_none());
    }
}
