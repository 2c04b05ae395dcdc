//! The Postgres wire protocol, driven by a real client (tokio-postgres) over real sockets:
//! simple and extended queries, parameters, binary results, multi-statement strings, refusals,
//! Grafana's health check and catalogue queries, token auth and TLS.

mod common;
use common::*;

use std::time::{Duration, SystemTime};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

const CC_SESSION: &str = "f140c7f4-628d-4454-b78d-f488814a62f0";

async fn ingest(app: &TestApp) {
    for f in [
        "claude-code/otlp/logs-1.pb",
        "claude-code/otlp/logs-2.pb",
        "claude-code/otlp/metrics-1.pb",
        "langchain-openinference/traces-1.pb",
    ] {
        let r = app.post("/", "application/x-protobuf", fixture(f)).await;
        assert_eq!(r.status(), 200, "{f}");
    }
}

fn config(app: &TestApp) -> Config {
    let mut c = Config::new();
    c.host("127.0.0.1").port(app.pg.port()).user("grafana").dbname("agent_console");
    c
}

async fn connect(app: &TestApp) -> Client {
    let (client, conn) = config(app).connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// Text values of the rows of a simple query (NULL as `None`).
fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect()
}

fn code(e: &tokio_postgres::Error) -> SqlState {
    e.code().cloned().unwrap_or_else(|| panic!("no SQLSTATE in {e:?}"))
}

/// A `numeric` decoded from Postgres' binary format into its decimal text.
#[derive(Debug, PartialEq)]
struct Numeric(String);

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let rd = |k: usize| i16::from_be_bytes([raw[k], raw[k + 1]]);
        let (n, weight, sign, dscale) = (rd(0) as usize, rd(2) as i32, rd(4) as u16, rd(6) as usize);
        let digit = |idx: i32| if idx < 0 || idx as usize >= n { 0 } else { rd(8 + 2 * idx as usize) };
        let mut int = String::new();
        for idx in 0..=weight {
            let d = digit(idx);
            if int.is_empty() {
                if d != 0 {
                    int = d.to_string();
                }
            } else {
                int.push_str(&format!("{d:04}"));
            }
        }
        if int.is_empty() {
            int.push('0');
        }
        let mut frac = String::new();
        let mut idx = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(idx)));
            idx += 1;
        }
        frac.truncate(dscale);
        let sign = if sign == 0x4000 { "-" } else { "" };
        Ok(Numeric(if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_queries_answer_in_postgres_text_format() {
    let app = spawn().await;
    ingest(&app).await;
    let db = connect(&app).await;

    let sql = format!(
        "SELECT model, input_tokens, cost_usd, time, error, cost_source FROM model_calls \
         WHERE session_id = '{CC_SESSION}' ORDER BY time"
    );
    let got = rows(&db.simple_query(&sql).await.expect("query"));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0][0].as_deref(), Some("claude-opus-4-8"));
    assert_eq!(got[0][1].as_deref(), Some("4200"));
    assert_eq!(got[0][2].as_deref(), Some("0.014875"));
    // Postgres text format: a space, not `T`, and a `+00` offset.
    assert_eq!(got[0][3].as_deref(), Some("2026-11-21 14:58:51.967+00"));
    assert_eq!(got[0][4].as_deref(), Some("f"));
    assert_eq!(got[1][1].as_deref(), Some("4300"));
    // Postgres-style relative time works although DuckDB lacks ICU (store::sqlcompat).
    let recent = rows(
        &db.simple_query("SELECT count(*) FROM model_calls WHERE time > now() - INTERVAL '100 years'")
            .await
            .expect("now() - interval"),
    );
    assert_eq!(recent, vec![vec![Some("4".to_string())]]);

    // Several statements: one result each, then one ReadyForQuery (Grafana relies on this).
    let msgs = db.simple_query("SET TIMEZONE TO 'UTC'; select 42 AS answer").await.expect("multi");
    assert!(matches!(msgs[0], SimpleQueryMessage::CommandComplete(0)), "{msgs:?}");
    assert_eq!(rows(&msgs), vec![vec![Some("42".to_string())]]);
    assert!(matches!(msgs.last(), Some(SimpleQueryMessage::CommandComplete(1))));
    let msgs = db.simple_query("SELECT 1 AS a; SELECT 2 AS a /*key='value',k2='v2'*/;").await.expect("two");
    assert_eq!(rows(&msgs), vec![vec![Some("1".to_string())], vec![Some("2".to_string())]]);

    // Health checks of every Grafana era: comment-only and empty queries.
    for ping in ["-- ping", ";", "/* x */", ""] {
        let msgs = db.simple_query(ping).await.unwrap_or_else(|e| panic!("{ping:?}: {e}"));
        assert!(rows(&msgs).is_empty(), "{ping:?}");
    }

    // The first failing statement ends the string; later ones do not run; the connection lives on.
    let err = db.simple_query("SELECT 1; SELECT * FROM no_such_table; SELECT 3").await.expect_err("fails");
    assert_eq!(code(&err), SqlState::UNDEFINED_TABLE);
    let got = rows(&db.simple_query("SHOW TimeZone").await.expect("show"));
    assert_eq!(got, vec![vec![Some("UTC".to_string())]]);
    let got = rows(&db.simple_query("SELECT version()").await.expect("version"));
    assert!(got[0][0].as_deref().is_some_and(|v| v.starts_with("PostgreSQL 16")), "{got:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_queries_bind_parameters_and_return_binary_values() {
    let app = spawn().await;
    ingest(&app).await;
    let db = connect(&app).await;

    let stmt = db
        .prepare(
            "SELECT model, input_tokens, cost_usd, time, error, epoch_ms(time) AS ms FROM model_calls \
             WHERE input_tokens > $1 AND model = $2 AND time BETWEEN $3 AND $4 ORDER BY time LIMIT $5",
        )
        .await
        .expect("prepare");
    // Parameter types come from the columns they are compared with.
    assert_eq!(stmt.params(), &[Type::INT8, Type::TEXT, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::INT8]);
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, vec![Type::TEXT, Type::INT8, Type::FLOAT8, Type::TIMESTAMPTZ, Type::BOOL, Type::INT8]);

    let from = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let to = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let rows = db.query(&stmt, &[&4000i64, &"claude-opus-4-8", &from, &to, &10i64]).await.expect("query");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, String>(0), "claude-opus-4-8");
    assert_eq!(rows[0].get::<_, i64>(1), 4200);
    assert!((rows[0].get::<_, f64>(2) - 0.014875).abs() < 1e-12);
    let ms: i64 = rows[0].get(5);
    assert_eq!(rows[0].get::<_, SystemTime>(3), SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64));
    assert_eq!(ms, 1_795_273_131_967);
    assert!(!rows[0].get::<_, bool>(4));
    // The same prepared statement, other parameters.
    let rows = db.query(&stmt, &[&4250i64, &"claude-opus-4-8", &from, &to, &10i64]).await.expect("again");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(1), 4300);

    // json, numeric (DECIMAL and HUGEINT sums), int4/int2/float4/bytea, explicit casts.
    let row = db
        .query_one(
            "SELECT attributes, sum(input_tokens) OVER () AS total, 1.50::DECIMAL(10,2) AS d, 7::INTEGER AS i, \
             3::SMALLINT AS s, 1.5::REAL AS r, 'ab'::BLOB AS b, $1::DOUBLE + 1 AS x, $2::BOOLEAN AS flag \
             FROM model_calls JOIN spans USING (span_id) WHERE model_calls.model = 'gpt-4o-mini' \
             ORDER BY model_calls.time LIMIT 1",
            &[&1.5f64, &true],
        )
        .await
        .expect("types");
    let attrs: serde_json::Value = row.get(0);
    assert!(attrs.is_object(), "{attrs}");
    assert_eq!(row.columns()[0].type_(), &Type::JSON);
    assert_eq!(row.get::<_, Numeric>(1), Numeric("2550".into()));
    assert_eq!(row.get::<_, Numeric>(2), Numeric("1.50".into()));
    assert_eq!(row.get::<_, i32>(3), 7);
    assert_eq!(row.get::<_, i16>(4), 3);
    assert_eq!(row.get::<_, f32>(5), 1.5);
    assert_eq!(row.get::<_, Vec<u8>>(6), b"ab".to_vec());
    assert_eq!(row.get::<_, f64>(7), 2.5);
    assert!(row.get::<_, bool>(8));

    // NULLs both ways.
    let row =
        db.query_one("SELECT $1::VARCHAR IS NULL AS n, NULL::BIGINT AS v", &[&None::<String>]).await.expect("null");
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<i64>>(1), None);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_copy_settings_and_files_are_refused_and_the_connection_survives() {
    let app = spawn().await;
    ingest(&app).await;
    let db = connect(&app).await;
    let refused = [
        (
            "INSERT INTO spans (time, trace_id, span_id, start_time, end_time) VALUES (now(), 'a', 'b', now(), now())",
            SqlState::READ_ONLY_SQL_TRANSACTION,
        ),
        ("DELETE FROM spans", SqlState::READ_ONLY_SQL_TRANSACTION),
        ("CREATE TABLE evil (x INT)", SqlState::READ_ONLY_SQL_TRANSACTION),
        ("COPY spans TO STDOUT", SqlState::INSUFFICIENT_PRIVILEGE),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", SqlState::INSUFFICIENT_PRIVILEGE),
        ("SET memory_limit = '1TB'", SqlState::INSUFFICIENT_PRIVILEGE),
        ("SET enable_external_access = true", SqlState::INSUFFICIENT_PRIVILEGE),
        ("SELECT * FROM read_csv('/etc/passwd')", SqlState::INSUFFICIENT_PRIVILEGE),
        ("SELECT * FROM '/etc/passwd'", SqlState::INSUFFICIENT_PRIVILEGE),
        ("ATTACH '/tmp/evil.duckdb' AS evil", SqlState::INSUFFICIENT_PRIVILEGE),
    ];
    for (sql, want) in &refused {
        let err = db.batch_execute(sql).await.expect_err(sql);
        assert_eq!(&code(&err), want, "simple {sql}: {err}");
        let err = db.query(*sql, &[]).await.expect_err(sql);
        assert_eq!(&code(&err), want, "extended {sql}: {err}");
        let n: i64 = db.query_one("SELECT count(*) FROM model_calls", &[]).await.expect("still usable").get(0);
        assert_eq!(n, 4, "after {sql}");
    }
    // Session settings Postgres clients send are accepted without touching DuckDB.
    db.batch_execute("SET statement_timeout = 5000; SET application_name = 'x'; RESET ALL; DISCARD ALL")
        .await
        .expect("session chatter");
    // Transactions: BEGIN / error / ROLLBACK, then back to normal.
    db.batch_execute("BEGIN").await.expect("begin");
    assert!(db.batch_execute("DROP TABLE spans").await.is_err());
    db.batch_execute("ROLLBACK").await.expect("rollback");
    let n: i64 = db.query_one("SELECT count(*) FROM spans", &[]).await.expect("spans").get(0);
    assert!(n > 0);
    app.shutdown().await;
}

/// Grafana's table-list query (reference section 6), verbatim.
const GRAFANA_TABLES: &str = r#"SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1"#;

/// Grafana's column-list query for `model_calls` (reference section 6).
const GRAFANA_COLUMNS: &str = r#"SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('model_calls'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('model_calls'))[1]
          AND quote_ident(table_name) = (parse_ident('model_calls'))[2]
        ELSE quote_ident(table_name) = 'model_calls'
          AND
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_health_check_probes_catalogue_and_panel_queries() {
    let app = spawn().await;
    ingest(&app).await;
    let db = connect(&app).await;

    // Version and TimescaleDB detection.
    let got =
        rows(&db.simple_query("SELECT current_setting('server_version_num')::int/100 as version").await.expect("v"));
    assert_eq!(got, vec![vec![Some("1600".to_string())]]);
    let v = db.prepare("SELECT current_setting('server_version_num')::int/100 as version").await.expect("prepare");
    assert_eq!((v.columns()[0].name(), v.columns()[0].type_()), ("version", &Type::INT4));
    let got = db.simple_query("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").await.expect("ext");
    assert!(rows(&got).is_empty());

    // Table and column listings, with Postgres type spellings.
    let tables: Vec<String> = rows(&db.simple_query(GRAFANA_TABLES).await.expect("tables"))
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    for t in ["agents", "logs", "metric_points", "model_calls", "sessions", "spans", "tool_calls"] {
        assert!(tables.iter().any(|x| x == t), "{t} in {tables:?}");
    }
    let cols = rows(&db.simple_query(GRAFANA_COLUMNS).await.expect("columns"));
    let ty =
        |name: &str| cols.iter().find(|r| r[0].as_deref() == Some(name)).and_then(|r| r[1].clone()).unwrap_or_default();
    // `time` is a keyword: quote_ident quotes it, as Postgres does.
    assert_eq!(ty("\"time\""), "timestamp with time zone");
    assert_eq!(ty("input_tokens"), "bigint");
    assert_eq!(ty("cost_usd"), "double precision");
    assert_eq!(ty("model"), "text");
    assert_eq!(ty("error"), "boolean");
    assert_eq!(cols.len(), 23);

    // $__timeGroupAlias + $__timeFilter output: a float8 `time` and a float8 value.
    let panel = "SELECT floor(extract(epoch from time)/300)*300 AS \"time\", avg(input_tokens) AS v FROM model_calls \
                 WHERE time BETWEEN '2026-11-21T14:00:00Z' AND '2026-11-21T16:05:00.5Z' GROUP BY 1 ORDER BY 1";
    let p = db.prepare(panel).await.expect("prepare panel");
    let types: Vec<&Type> = p.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, vec![&Type::FLOAT8, &Type::FLOAT8]);
    let got = rows(&db.simple_query(&format!("-- ping\n{panel}")).await.expect("panel"));
    assert_eq!(got, vec![vec![Some("1795272900".to_string()), Some("2762.5".to_string())]]);

    // A raw time column: timestamptz, float8, text.
    let raw =
        "SELECT time AS \"time\", cost_usd AS v, model AS host FROM model_calls WHERE cost_usd IS NOT NULL ORDER BY 1";
    let p = db.prepare(raw).await.expect("prepare raw");
    let types: Vec<&Type> = p.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(types, vec![&Type::TIMESTAMPTZ, &Type::FLOAT8, &Type::TEXT]);
    let got = rows(&db.simple_query(raw).await.expect("raw"));
    assert_eq!(got[1][0].as_deref(), Some("2026-11-21 14:58:52.235+00"));

    // Newest Grafana's schema browser: extended protocol with a parameter, binary results.
    let schemas: Vec<String> = db
        .query(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT LIKE 'pg_%' \
             AND schema_name != 'information_schema' ORDER BY schema_name",
            &[],
        )
        .await
        .expect("schemata")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(schemas.iter().any(|s| s == "main"), "{schemas:?}");
    let tables: Vec<String> = db
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 \
             AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY table_name",
            &[&"main"],
        )
        .await
        .expect("tables by schema")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.iter().any(|t| t == "metric_increments") && tables.iter().any(|t| t == "spans"), "{tables:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_capped_at_query_max_rows() {
    let app = spawn_with(|a| a.query_max_rows = 5).await;
    let db = connect(&app).await;
    let got = rows(&db.simple_query("SELECT range AS n FROM range(100)").await.expect("simple"));
    assert_eq!(got.len(), 5);
    assert_eq!(got[4][0].as_deref(), Some("4"));
    let got = db.query("SELECT range AS n FROM range(100000)", &[]).await.expect("extended");
    assert_eq!(got.len(), 5);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_token_is_the_password() {
    let app = spawn_with(|a| a.read_token = Some("s3cret".into())).await;
    let err = config(&app).password("wrong").connect(NoTls).await.err().expect("wrong password refused");
    assert_eq!(code(&err), SqlState::INVALID_PASSWORD);
    assert!(config(&app).connect(NoTls).await.is_err(), "no password refused");
    let (db, conn) = config(&app).password("s3cret").connect(NoTls).await.expect("right password");
    tokio::spawn(conn);
    let n: i32 = db.query_one("SELECT 40 + 2", &[]).await.expect("query").get(0);
    assert_eq!(n, 42);
    app.shutdown().await;
}

mod tls {
    //! A tokio-postgres TLS connector on rustls that, like `sslmode=require`, does not verify
    //! the certificate but records it.
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use pgwire::tokio::tokio_rustls::client::TlsStream;
    use pgwire::tokio::tokio_rustls::rustls;
    use pgwire::tokio::tokio_rustls::TlsConnector;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

    #[derive(Debug)]
    struct AcceptAny {
        seen: Arc<Mutex<Option<Vec<u8>>>>,
        algs: rustls::crypto::WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.seen.lock().expect("lock") = Some(end_entity.to_vec());
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    }

    #[derive(Clone)]
    pub struct MakeRustls {
        config: Arc<rustls::ClientConfig>,
        pub seen: Arc<Mutex<Option<Vec<u8>>>>,
    }

    impl MakeRustls {
        pub fn new() -> Self {
            let provider = rustls::crypto::ring::default_provider();
            let seen = Arc::new(Mutex::new(None));
            let verifier = AcceptAny { seen: seen.clone(), algs: provider.signature_verification_algorithms };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Self { config: Arc::new(config), seen }
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for MakeRustls {
        type Stream = Stream<S>;
        type TlsConnect = Connect;
        type Error = io::Error;

        fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, io::Error> {
            Ok(Connect { config: self.config.clone(), domain: domain.to_string() })
        }
    }

    pub struct Connect {
        config: Arc<rustls::ClientConfig>,
        domain: String,
    }

    impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for Connect {
        type Stream = Stream<S>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            Box::pin(async move {
                let name = ServerName::try_from(self.domain).map_err(|e| io::Error::other(e.to_string()))?;
                let tls = TlsConnector::from(self.config).connect(name, stream).await?;
                Ok(Stream(tls))
            })
        }
    }

    pub struct Stream<S>(TlsStream<S>);

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
        fn channel_binding(&self) -> ChannelBinding {
            ChannelBinding::none()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_a_certificate_is_configured_plain_otherwise() {
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_postgres::config::SslMode;

    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (cert, key) = (data.join("pg-test-cert.pem"), data.join("pg-test-key.pem"));

    // Default: SSLRequest is answered 'N'; `require` fails, `prefer` falls back to plain.
    let plain = spawn().await;
    let err = config(&plain).ssl_mode(SslMode::Require).connect(tls::MakeRustls::new()).await;
    assert!(err.is_err(), "require must fail without TLS");
    let (db, conn) = config(&plain).ssl_mode(SslMode::Prefer).connect(tls::MakeRustls::new()).await.expect("prefer");
    tokio::spawn(conn);
    assert_eq!(db.query_one("SELECT 1::BIGINT", &[]).await.expect("plain").get::<_, i64>(0), 1);
    plain.shutdown().await;

    // With a certificate: TLS, and the token is asked for in cleartext inside it.
    let app = spawn_with(|a| {
        a.pg_tls_cert = Some(cert.clone());
        a.pg_tls_key = Some(key.clone());
        a.read_token = Some("tok".into());
    })
    .await;
    let make = tls::MakeRustls::new();
    let (db, conn) = config(&app).ssl_mode(SslMode::Require).password("tok").connect(make.clone()).await.expect("tls");
    tokio::spawn(conn);
    assert_eq!(db.query_one("SELECT 2::BIGINT", &[]).await.expect("over tls").get::<_, i64>(0), 2);
    let expected = CertificateDer::from_pem_file(&cert).expect("cert");
    assert_eq!(make.seen.lock().expect("lock").as_deref(), Some(expected.as_ref()), "server presented our cert");
    let err = config(&app).ssl_mode(SslMode::Require).password("nope").connect(make).await.err().expect("refused");
    assert_eq!(code(&err), SqlState::INVALID_PASSWORD);
    app.shutdown().await;
}

/// A Postgres client over a raw socket, for what drivers will not send (oversized messages) or
/// will not do (stop reading).
mod raw {
    use std::collections::HashMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Connect and send a startup packet (protocol 3.0, no SSL request).
    pub async fn startup(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut body = 196_608i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0raw\0database\0agent_console\0\0");
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        s.write_all(&msg).await.expect("startup");
        s
    }

    /// One backend message, `None` once the server has closed the connection.
    pub async fn read_msg(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).await.ok()?;
        Some((head[0], body))
    }

    /// Messages up to and including ReadyForQuery.
    pub async fn until_ready(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(m) = read_msg(s).await {
            let done = m.0 == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// The fields of an ErrorResponse / NoticeResponse body.
    pub fn fields(body: &[u8]) -> HashMap<u8, String> {
        body.split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
            .collect()
    }

    pub fn query(sql: &str) -> Vec<u8> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        msg
    }
}

fn reader(app: &TestApp) -> std::sync::Arc<agent_console::store::reader::Reader> {
    app.running.as_ref().expect("running").store.reader.clone()
}

/// Wait (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 10 row 1: the rewriter recursed once per nesting level and a 100 KB query nested 5,000
/// deep killed the collector (SIGABRT) before DuckDB saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_sql_is_an_error_not_a_crash() {
    let app = spawn().await;
    ingest(&app).await;
    let db = connect(&app).await;
    let depth = 5_000;
    for (open, close) in [
        ("extract(epoch from ", ")"),
        ("extract(hour from ", ")"),
        ("date_trunc('hour', ", ")"),
        ("pg_get_expr(", ", 1, true)"),
        ("(", ")"),
    ] {
        let sql = format!("SELECT {}time{} FROM model_calls", open.repeat(depth), close.repeat(depth));
        assert!(sql.len() > 10_000, "{}", sql.len());
        let err = db.simple_query(&sql).await.expect_err("too deep for DuckDB");
        assert_eq!(code(&err).code(), "54001", "{open}: {err:?}");
        let err = db.prepare(&sql).await.expect_err("too deep for DuckDB");
        assert_eq!(code(&err).code(), "54001", "{open}: {err:?}");
    }
    // Deep but legitimate: 52 terms (refused by the old vetting parser), nested rewrites.
    let n: i32 = db.query_one(&format!("SELECT {}", vec!["1"; 52].join("+")), &[]).await.expect("52 terms").get(0);
    assert_eq!(n, 52);
    let nested = format!(
        "SELECT count(*) FROM model_calls WHERE {}time{} IS NOT NULL",
        "date_trunc('hour', ".repeat(50),
        ")".repeat(50)
    );
    assert_eq!(db.query_one(&nested, &[]).await.expect("nested").get::<_, i64>(0), 4);
    // The connection and the server live on.
    let other = connect(&app).await;
    assert_eq!(other.query_one("SELECT 40 + 2", &[]).await.expect("new connection").get::<_, i32>(0), 42);
    assert_eq!(db.query_one("SELECT 41 + 1", &[]).await.expect("same connection").get::<_, i32>(0), 42);
    app.shutdown().await;
}

/// Issue 10 row 1: messages up to 1 GiB were buffered. SQL over the HTTP cap gets 54000 and the
/// session goes on; a message over the frame cap closes the connection after a few bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_sql_and_messages_are_refused() {
    let app = spawn().await;
    let db = connect(&app).await;
    let long = format!("SELECT '{}' AS s", "x".repeat(300 * 1024));
    let err = db.simple_query(&long).await.expect_err("over the SQL cap");
    assert_eq!(code(&err), SqlState::PROGRAM_LIMIT_EXCEEDED, "{err:?}");
    let err = db.prepare(&long).await.expect_err("over the SQL cap");
    assert_eq!(code(&err), SqlState::PROGRAM_LIMIT_EXCEEDED, "{err:?}");
    assert_eq!(db.query_one("SELECT 7", &[]).await.expect("usable").get::<_, i32>(0), 7);

    // A Query announcing 1 GiB: FATAL 54000 at once, then the server closes the connection.
    let mut s = raw::startup(app.pg).await;
    let greeting = raw::until_ready(&mut s).await;
    assert_eq!(greeting.last().map(|m| m.0), Some(b'Z'), "{greeting:?}");
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&0x3fff_ffffi32.to_be_bytes());
    msg.extend_from_slice(b"SELECT 1 -- and a gigabyte more");
    tokio::io::AsyncWriteExt::write_all(&mut s, &msg).await.expect("send");
    let (ty, body) = raw::read_msg(&mut s).await.expect("an error before the close");
    assert_eq!(ty, b'E');
    let f = raw::fields(&body);
    assert_eq!((f[&b'S'].as_str(), f[&b'C'].as_str()), ("FATAL", "54000"), "{f:?}");
    assert!(f[&b'M'].contains("exceeds the limit"), "{f:?}");
    assert!(raw::read_msg(&mut s).await.is_none(), "closed after the error");
    // So is an oversized startup packet.
    let mut s = tokio::net::TcpStream::connect(app.pg).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut s, &100_000_000i32.to_be_bytes()).await.expect("send");
    tokio::io::AsyncWriteExt::write_all(&mut s, &196_608i32.to_be_bytes()).await.expect("send");
    let mut rest = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest).await;
    // The server serves on.
    assert_eq!(db.query_one("SELECT 8", &[]).await.expect("usable").get::<_, i32>(0), 8);
    let other = connect(&app).await;
    assert_eq!(other.query_one("SELECT 9", &[]).await.expect("new").get::<_, i32>(0), 9);
    app.shutdown().await;
}

/// Issue 10 row 10: connections are capped (53300, like Postgres' max_connections) and the cap
/// frees up as connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let app = spawn_with(|a| a.pg_max_connections = 2).await;
    let (c1, conn1) = config(&app).connect(NoTls).await.expect("first");
    let conn1 = tokio::spawn(conn1);
    let c2 = connect(&app).await;
    let err = config(&app).connect(NoTls).await.err().expect("the third is refused");
    assert_eq!(code(&err), SqlState::TOO_MANY_CONNECTIONS, "{err:?}");
    assert_eq!(c2.query_one("SELECT 1", &[]).await.expect("still served").get::<_, i32>(0), 1);
    // Closing one makes room (the server notices the close, so retry until it has).
    drop(c1);
    let _ = conn1.await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let c3 = loop {
        match config(&app).connect(NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                break c;
            }
            Err(e) => {
                assert_eq!(code(&e), SqlState::TOO_MANY_CONNECTIONS, "{e:?}");
                assert!(std::time::Instant::now() < deadline, "the closed connection's slot never came back");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(c3.query_one("SELECT 3", &[]).await.expect("third").get::<_, i32>(0), 3);
    app.shutdown().await;
}

/// Issue 10 row 10: an idle session is closed (57P05, Postgres' idle_session_timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed() {
    let app = spawn_with(|a| a.pg_idle_timeout_secs = 1).await;
    let (db, conn) = config(&app).connect(NoTls).await.expect("connect");
    let conn = tokio::spawn(conn);
    assert_eq!(db.query_one("SELECT 1", &[]).await.expect("query").get::<_, i32>(0), 1);
    let ended = tokio::time::timeout(Duration::from_secs(60), conn).await.expect("closed by the server").expect("task");
    let err = ended.expect_err("the server ended the session");
    assert_eq!(err.code().map(|c| c.code()), Some("57P05"), "{err:?}");
    assert!(db.is_closed());
    // New sessions are fine.
    let again = connect(&app).await;
    assert_eq!(again.query_one("SELECT 2", &[]).await.expect("query").get::<_, i32>(0), 2);
    app.shutdown().await;
}

/// Issue 10 row 10: `SET` held any number of variables of any size per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_are_bounded() {
    let app = spawn().await;
    let db = connect(&app).await;
    let many: Vec<String> = (0..128).map(|k| format!("SET my.s{k} = 'value {k}'")).collect();
    db.batch_execute(&many.join("; ")).await.expect("128 settings");
    let got = rows(&db.simple_query("SHOW my.s127").await.expect("show"));
    assert_eq!(got, vec![vec![Some("value 127".to_string())]]);
    let err = db.batch_execute("SET my.one_too_many = 'x'").await.expect_err("129th");
    assert_eq!(code(&err), SqlState::PROGRAM_LIMIT_EXCEEDED, "{err:?}");
    let err = db.batch_execute(&format!("SET application_name = '{}'", "x".repeat(5000))).await.expect_err("big");
    assert_eq!(code(&err), SqlState::PROGRAM_LIMIT_EXCEEDED, "{err:?}");
    // Existing ones can change, RESET frees room, and the session goes on.
    db.batch_execute("SET my.s0 = 'changed'; RESET ALL; SET my.after_reset = 'ok'").await.expect("after reset");
    assert_eq!(db.query_one("SELECT 5", &[]).await.expect("usable").get::<_, i32>(0), 5);
    app.shutdown().await;
}

/// Issue 10 row 13: the read token is proven with SCRAM-SHA-256, not MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_token_is_proven_with_scram() {
    let app = spawn_with(|a| a.read_token = Some("s3cret".into())).await;
    let mut s = raw::startup(app.pg).await;
    let (ty, body) = raw::read_msg(&mut s).await.expect("authentication request");
    assert_eq!(ty, b'R');
    // AuthenticationSASL (10) with the mechanism list; MD5 would be 5 with a salt.
    assert_eq!(i32::from_be_bytes([body[0], body[1], body[2], body[3]]), 10, "{body:?}");
    let mechanisms: Vec<String> = body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(mechanisms, vec!["SCRAM-SHA-256"]);
    let err = config(&app).password("wrong").connect(NoTls).await.err().expect("wrong password");
    assert_eq!(code(&err), SqlState::INVALID_PASSWORD);
    let (db, conn) = config(&app).password("s3cret").connect(NoTls).await.expect("right password");
    tokio::spawn(conn);
    assert_eq!(db.query_one("SELECT 6", &[]).await.expect("query").get::<_, i32>(0), 6);
    app.shutdown().await;
}

/// Issue 10 row 7 and "smaller ones" over the wire: the sandbox escapes and path probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_holds_over_the_wire() {
    let app = spawn().await;
    let db = connect(&app).await;
    for sql in [
        "SELECT json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM checkpoint()'))",
        "SELECT * FROM duckdb_settings()",
        "SELECT current_setting('temp_directory') || ''",
        "SELECT * FROM pg_settings",
        "SELECT * FROM duckdb_databases()",
        "SELECT * FROM query('SELECT 1')",
    ] {
        let err = db.simple_query(sql).await.expect_err(sql);
        assert_eq!(code(&err), SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {err:?}");
        let err = db.prepare(sql).await.expect_err(sql);
        assert_eq!(code(&err), SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {err:?}");
    }
    for sql in ["SHOW temp_directory", "SELECT current_setting('temp_directory')"] {
        let err = db.simple_query(sql).await.expect_err("not a session setting");
        assert_eq!(code(&err), SqlState::UNDEFINED_OBJECT, "{sql}");
    }
    // Postgres session settings still answer through current_setting.
    let got = rows(&db.simple_query("SELECT current_setting('search_path')").await.expect("search_path"));
    assert_eq!(got, vec![vec![Some("main".to_string())]]);
    let dir = app.dir.path().to_str().expect("utf8").to_string();
    for sql in
        ["SELECT * FROM pg_database", "SELECT * FROM information_schema.schemata", "SELECT * FROM duckdb_tables()"]
    {
        let msgs = db.simple_query(sql).await.expect(sql);
        assert!(!format!("{:?}", rows(&msgs)).contains(&dir), "{sql} reveals the data directory");
    }
    app.shutdown().await;
}

/// Issue 10 row 6 over the wire: the row cap stops DuckDB (a 100 GB result answers 5 rows at
/// once) and a byte cap bounds the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_bytes_are_capped_before_they_are_made() {
    let app = spawn_with(|a| {
        a.query_max_rows = 5;
        a.query_timeout_ms = 20_000;
    })
    .await;
    let db = connect(&app).await;
    let huge = "SELECT repeat('x', 1000000) AS s FROM range(100000)";
    let got = rows(&db.simple_query(huge).await.expect("simple"));
    assert_eq!(got.len(), 5);
    assert_eq!(got[0][0].as_ref().map(String::len), Some(1_000_000));
    assert_eq!(db.query(huge, &[]).await.expect("extended").len(), 5);
    app.shutdown().await;

    let app = spawn_with(|a| a.query_max_bytes = 1024 * 1024).await;
    let db = connect(&app).await;
    let got = rows(&db.simple_query("SELECT repeat('x', 100000) AS s FROM range(1000)").await.expect("bytes"));
    assert!((9..=10).contains(&got.len()), "{} rows of 100 kB under a 1 MiB cap", got.len());
    let got = db.query("SELECT repeat('x', 100000) AS s FROM range(1000)", &[]).await.expect("extended");
    assert!((9..=10).contains(&got.len()), "{}", got.len());
    app.shutdown().await;
}

/// Issue 10 row 9 over the wire: a client that stops reading a large result does not keep its
/// DuckDB transaction open; the connection is closed after the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_lets_go_of_duckdb() {
    let app = spawn_with(|a| {
        a.query_send_timeout_secs = 1;
        a.query_timeout_ms = 600_000;
        a.query_max_rows = 100_000_000;
    })
    .await;
    ingest(&app).await;
    let reader = reader(&app);
    let mut s = raw::startup(app.pg).await;
    raw::until_ready(&mut s).await;
    let q = raw::query("SELECT i, repeat('x', 1000) AS pad FROM range(100000000) t(i)");
    tokio::io::AsyncWriteExt::write_all(&mut s, &q).await.expect("send");
    // Running, with a transaction open; the client reads nothing from here on.
    until("the query runs", || reader.in_flight() == 1).await;
    until("the stalled query is cancelled", || reader.in_flight() == 0).await;
    // Checkpoints succeed while the client still stalls.
    let conn = reader.connection().expect("connection");
    conn.execute_batch("CHECKPOINT").expect("checkpoint while a client stalls");
    // What the client eventually reads ends with the server closing the connection.
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink))
        .await
        .expect("closed");
    assert!(!sink.is_empty());
    let db = connect(&app).await;
    assert_eq!(db.query_one("SELECT count(*) FROM model_calls", &[]).await.expect("served").get::<_, i64>(0), 4);
    app.shutdown().await;
}
