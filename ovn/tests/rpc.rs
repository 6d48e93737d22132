mod common;

use common::Server;
use ovn::{Client, Error, nb};

#[tokio::test]
async fn list_dbs_get_schema_and_echo() {
    let s = Server::start();
    let c = common::client(&s).await;
    let dbs = c.list_dbs().await.unwrap();
    assert!(dbs.contains(&"OVN_Northbound".to_string()), "{dbs:?}");
    let schema = c.get_schema(nb::SCHEMA_NAME).await.unwrap();
    assert_eq!(schema.version, nb::SCHEMA_VERSION);
    let cols = |s: &ovn::DatabaseSchema| -> Vec<String> {
        s.tables
            .iter()
            .flat_map(|(t, ts)| ts.columns.keys().map(move |c| format!("{t}.{c}")))
            .collect()
    };
    assert_eq!(cols(&schema), cols(nb::schema()));
    assert_eq!(schema.tables.len(), nb::TABLES.len());
    c.echo().await.unwrap();
    c.check_schema(nb::schema()).await.unwrap();
}

#[tokio::test]
async fn rpc_errors_carry_the_ovsdb_error() {
    let s = Server::start();
    let c = common::client(&s).await;
    let e = c.get_schema("No_Such_DB").await.unwrap_err();
    assert_eq!(e.ovsdb_error(), Some("unknown database"), "{e}");
    assert!(matches!(e, Error::Rpc { .. }));
}

#[tokio::test]
async fn schema_mismatch_is_a_clear_error() {
    // A server serving the Open_vSwitch database instead of the NB.
    let vs = "/usr/share/openvswitch/vswitch.ovsschema";
    let s = Server::start_with(vs, false);
    let c = common::client(&s).await;
    let e = c.check_schema(nb::schema()).await.unwrap_err();
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e}");
    // The generic client still works with that schema.
    let sch = c.get_schema("Open_vSwitch").await.unwrap();
    assert!(sch.tables.contains_key("Bridge"));

    // A newer major version than compiled in is refused, an older minor accepted.
    let s2 = Server::start();
    let c2 = common::client(&s2).await;
    let mut model = nb::schema().clone();
    model.version = "8.0.0".into();
    let e = c2.check_schema(&model).await.unwrap_err();
    assert!(e.to_string().contains("incompatible"), "{e}");
    model.version = "7.0.0".into();
    let ty = model.tables["ACL"].columns["name"].clone();
    model
        .tables
        .get_mut("ACL")
        .unwrap()
        .columns
        .insert("no_such_column".into(), ty);
    let e = c2.check_schema(&model).await.unwrap_err();
    assert!(e.to_string().contains("no_such_column"), "{e}");
}

#[tokio::test]
async fn bad_targets_fail_cleanly() {
    assert!(matches!(
        Client::connect("ssl:1.2.3.4:1").await,
        Err(Error::InvalidTarget(_))
    ));
    let dir = common::TempDir::new("ovnt-");
    let e = Client::connect(&format!("unix:{}/none.sock", dir.0.display()))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

/// Add a `ptcp:` remote on 127.0.0.1 at run time and return its target.
async fn tcp_remote(s: &Server) -> String {
    let port = common::free_port();
    let out = std::process::Command::new(common::tool("ovs-appctl"))
        .arg("-t")
        .arg(s.dir.0.join("ctl"))
        .arg("ovsdb-server/add-remote")
        .arg(format!("ptcp:{port}:127.0.0.1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("tcp:127.0.0.1:{port}")
}

/// Connects to a remote just added: the server starts listening on its next
/// main-loop turn, which on a loaded machine can take a while.
async fn connect_tcp(target: &str, opts: ovn::ClientOptions) -> Client {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Client::connect_with(target, opts.clone()).await {
            Ok(c) => return c,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("connect over TCP to {target}: {e}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// ovsdb-server probes idle TCP clients with `echo` (every 5 s) and drops
/// those that do not answer; with our own probe off, only answering keeps
/// the connection.
#[tokio::test]
async fn server_echo_is_answered() {
    let s = Server::start();
    let target = tcp_remote(&s).await;
    let opts = ovn::ClientOptions {
        inactivity_probe: None,
        ..Default::default()
    };
    let c = connect_tcp(&target, opts).await;
    c.echo().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;
    c.echo().await.unwrap();
    assert_eq!(c.connections(), 1, "the server kept the idle connection");
    assert!(!s.log().contains("inactivity probe"), "{}", s.log());
}

#[tokio::test]
async fn tcp_transport() {
    let s = Server::start();
    let target = tcp_remote(&s).await;
    let c = connect_tcp(&target, ovn::ClientOptions::default()).await;
    assert!(
        c.list_dbs()
            .await
            .unwrap()
            .contains(&"OVN_Northbound".to_string())
    );
}
