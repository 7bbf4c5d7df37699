//! `data_items` (inline): the files of each project, newest first, and
//! `data_groups`: per project and kind, the count, total size and split
//! (TRAIN/VAL/TEST). Groups are recomputed from the project's items after each
//! change, so applying an event twice gives the same rows.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};
use tessera_domain::project::data::{ClassType, DataEvent, DataKind, Existing};
use tessera_domain::project::ProjectEvent;
use tessera_domain::RecordedEvent;

use crate::{Projection, ProjectionError};

pub struct DataItems;

/// Orders items within one event: `seq = global_position × SEQ_STRIDE + index`.
pub const SEQ_STRIDE: i64 = 1024;

const ITEM_COLUMNS: usize = 9;

#[async_trait]
impl Projection for DataItems {
    fn name(&self) -> &'static str {
        "data_items"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["data_items", "data_groups"]
    }

    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        if event.is::<ProjectEvent>() {
            if let ProjectEvent::ProjectDeleted { .. } = event.decode::<ProjectEvent>()? {
                for table in ["data_items", "data_groups"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE project_id = $1"))
                        .bind(&event.stream_id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
            return Ok(());
        }
        if !event.is::<DataEvent>() {
            return Ok(());
        }
        let project_id = match event.decode::<DataEvent>()? {
            DataEvent::DataItemsUploaded {
                project_id, items, ..
            } => {
                let base = event.global_position * SEQ_STRIDE;
                let mut sql = String::from(
                    "INSERT INTO data_items (project_id, filename, kind, s3_key, size, hash, gen_id, classtype, seq) VALUES ",
                );
                for i in 0..items.len() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let p = i * ITEM_COLUMNS;
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6,
                        p + 7,
                        p + 8,
                        p + 9
                    ));
                }
                sql.push_str(
                    " ON CONFLICT (project_id, filename) DO UPDATE SET kind = excluded.kind, \
                     s3_key = excluded.s3_key, size = excluded.size, hash = excluded.hash, \
                     gen_id = excluded.gen_id, classtype = excluded.classtype, seq = excluded.seq \
                     WHERE data_items.seq <= excluded.seq",
                );
                let mut query = sqlx::query(&sql);
                for (i, u) in items.iter().enumerate() {
                    query = query
                        .bind(&project_id)
                        .bind(&u.item.filename)
                        .bind(u.item.kind.as_str())
                        .bind(&u.item.s3_key)
                        .bind(u.item.size as i64)
                        .bind(&u.item.hash)
                        .bind(&u.item.gen_id)
                        .bind(u.item.classtype.map_or("", ClassType::as_str))
                        .bind(base + i as i64);
                }
                if !items.is_empty() {
                    query.execute(&mut *conn).await?;
                }
                project_id
            }
            DataEvent::DataItemsDeleted {
                project_id, items, ..
            } => {
                for chunk in items.chunks(500) {
                    let sql = format!(
                        "DELETE FROM data_items WHERE project_id = $1 AND filename IN ({})",
                        crate::placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query(&sql).bind(&project_id);
                    for d in chunk {
                        query = query.bind(&d.filename);
                    }
                    query.execute(&mut *conn).await?;
                }
                project_id
            }
            DataEvent::DataItemsSplit {
                project_id,
                assignments,
                ..
            } => {
                for (filename, classtype) in &assignments {
                    sqlx::query(
                        "UPDATE data_items SET classtype = $1 WHERE project_id = $2 AND filename = $3",
                    )
                    .bind(classtype.as_str())
                    .bind(&project_id)
                    .bind(filename)
                    .execute(&mut *conn)
                    .await?;
                }
                project_id
            }
        };
        regroup(conn, &project_id).await?;
        Ok(())
    }
}

/// Recomputes a project's groups from its items.
async fn regroup(conn: &mut AnyConnection, project_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM data_groups WHERE project_id = $1")
        .bind(project_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO data_groups (project_id, kind, count, size, train, val, test) \
         SELECT project_id, kind, COUNT(*), SUM(size), \
                SUM(CASE WHEN classtype = 'TRAIN' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN classtype = 'VAL' THEN 1 ELSE 0 END), \
                SUM(CASE WHEN classtype = 'TEST' THEN 1 ELSE 0 END) \
         FROM data_items WHERE project_id = $1 GROUP BY project_id, kind",
    )
    .bind(project_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The current records of the named files of a project.
pub async fn existing(
    conn: &mut AnyConnection,
    project_id: &str,
    filenames: &[&str],
) -> Result<HashMap<String, Existing>, sqlx::Error> {
    let mut found = HashMap::with_capacity(filenames.len());
    for chunk in filenames.chunks(500) {
        let sql = format!(
            "SELECT filename, s3_key, size, kind, classtype FROM data_items \
             WHERE project_id = $1 AND filename IN ({})",
            crate::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(project_id);
        for name in chunk {
            query = query.bind(*name);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let kind: String = row.try_get(3)?;
            let classtype: String = row.try_get(4)?;
            found.insert(
                row.try_get(0)?,
                Existing {
                    s3_key: row.try_get(1)?,
                    size: row.try_get::<i64, _>(2)?.max(0) as u64,
                    kind: DataKind::parse(&kind)
                        .map_err(|e| sqlx::Error::Decode(e.to_string().into()))?,
                    classtype: ClassType::parse(&classtype),
                },
            );
        }
    }
    Ok(found)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub project_id: String,
    pub kind: String,
    pub count: i64,
    pub size: i64,
    /// TRAIN / VAL / TEST counts.
    pub split: [i64; 3],
}

/// The groups of the given projects.
pub async fn groups(
    conn: &mut AnyConnection,
    project_ids: &[&str],
) -> Result<Vec<GroupRow>, sqlx::Error> {
    if project_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT project_id, kind, count, size, train, val, test FROM data_groups WHERE project_id IN ({}) ORDER BY project_id, kind",
        crate::placeholders(1, project_ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in project_ids {
        query = query.bind(*id);
    }
    query
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok(GroupRow {
                project_id: r.try_get(0)?,
                kind: r.try_get(1)?,
                count: r.try_get(2)?,
                size: r.try_get(3)?,
                split: [r.try_get(4)?, r.try_get(5)?, r.try_get(6)?],
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub filename: String,
    pub s3_key: String,
    pub kind: String,
    pub size: i64,
    pub gen_id: String,
    pub classtype: String,
    pub seq: i64,
    pub hash: String,
}

/// One page of a project's items, newest first, strictly older than `before`
/// (a `seq`), of one kind or all.
pub async fn page(
    conn: &mut AnyConnection,
    project_id: &str,
    kind: Option<DataKind>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<ItemRow>, sqlx::Error> {
    let kind_filter = if kind.is_some() { " AND kind = $3" } else { "" };
    let sql = format!(
        "SELECT {ITEM_SELECT} FROM data_items \
         WHERE project_id = $1 AND seq < $2{kind_filter} ORDER BY seq DESC LIMIT {}",
        limit.clamp(1, 10_000)
    );
    let mut query = sqlx::query(&sql)
        .bind(project_id)
        .bind(before.unwrap_or(i64::MAX));
    if let Some(k) = kind {
        query = query.bind(k.as_str());
    }
    query.fetch_all(conn).await?.iter().map(item_row).collect()
}

const ITEM_SELECT: &str = "filename, s3_key, kind, size, gen_id, classtype, seq, hash";

fn item_row(r: &sqlx::any::AnyRow) -> Result<ItemRow, sqlx::Error> {
    Ok(ItemRow {
        filename: r.try_get(0)?,
        s3_key: r.try_get(1)?,
        kind: r.try_get(2)?,
        size: r.try_get(3)?,
        gen_id: r.try_get(4)?,
        classtype: r.try_get(5)?,
        seq: r.try_get(6)?,
        hash: r.try_get(7)?,
    })
}

/// Every item of the given kinds of a project, by kind then file name.
pub async fn of_kinds(
    conn: &mut AnyConnection,
    project_id: &str,
    kinds: &[DataKind],
) -> Result<Vec<ItemRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_SELECT} FROM data_items WHERE project_id = $1 AND kind IN ({}) \
         ORDER BY kind, filename",
        crate::placeholders(2, kinds.len())
    );
    let mut query = sqlx::query(&sql).bind(project_id);
    for k in kinds {
        query = query.bind(k.as_str());
    }
    query.fetch_all(conn).await?.iter().map(item_row).collect()
}

/// The position of one item in the newest-first order.
pub async fn seq_of(
    conn: &mut AnyConnection,
    project_id: &str,
    filename: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT seq FROM data_items WHERE project_id = $1 AND filename = $2")
        .bind(project_id)
        .bind(filename)
        .fetch_optional(conn)
        .await
}

/// Every item of one kind of a project, by file name: `(filename, s3_key)`.
pub async fn of_kind(
    conn: &mut AnyConnection,
    project_id: &str,
    kind: DataKind,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT filename, s3_key FROM data_items WHERE project_id = $1 AND kind = $2 ORDER BY filename",
    )
    .bind(project_id)
    .bind(kind.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}
