//! The test-support module keeps tests apart: a schema each, migrated, gone after the test.

mod support;

use sqlx::Row;

#[tokio::test]
async fn each_test_database_is_migrated_and_private() {
    let first = support::TestDb::new().await;
    let second = support::TestDb::new().await;
    assert_ne!(first.schema, second.schema);

    sqlx::query("INSERT INTO service_events (kind) VALUES ('deploy')").execute(&first.pool).await.expect("insert");
    async fn count(pool: &sqlx::PgPool) -> i64 {
        sqlx::query("SELECT count(*) AS n FROM service_events").fetch_one(pool).await.expect("count").get("n")
    }
    assert_eq!(count(&first.pool).await, 1);
    assert_eq!(count(&second.pool).await, 0, "rows leak between test databases");
}

#[tokio::test]
async fn a_test_schema_is_dropped_with_its_test_database() {
    let db = support::TestDb::new().await;
    let schema = db.schema.clone();
    let observer = sqlx::PgPool::connect(&std::env::var("DATABASE_URL").expect("url")).await.expect("observer");
    let exists = |observer: sqlx::PgPool, schema: String| async move {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&observer)
            .await
            .expect("query")
    };
    assert!(exists(observer.clone(), schema.clone()).await);
    drop(db);
    assert!(!exists(observer, schema).await, "the schema outlived its test");
}

#[tokio::test]
async fn schemas_of_dead_runs_are_swept_by_the_next_test() {
    let observer = sqlx::PgPool::connect(&std::env::var("DATABASE_URL").expect("url")).await.expect("observer");
    // A schema named for a backend that does not exist: what a killed run leaves behind.
    let orphan = "shipshape_test_2147483646_0";
    sqlx::query(&format!(r#"CREATE SCHEMA IF NOT EXISTS "{orphan}""#)).execute(&observer).await.expect("orphan");
    let _db = support::TestDb::new().await;
    let left: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(orphan)
        .fetch_one(&observer)
        .await
        .expect("query");
    assert!(!left, "the orphaned schema was not swept");
}
