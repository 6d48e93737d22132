//! Reading the box's OVN Northbound DB: which rows carry a vpcnet owner.

use std::collections::BTreeMap;

/// The box's Northbound DB address (`OVN_NB_DB`, else the box's socket).
pub fn nb_target() -> String {
    std::env::var("OVN_NB_DB").unwrap_or_else(|_| {
        format!(
            "unix:{}",
            crate::box_dir().join("ovn/ovnnb_db.sock").display()
        )
    })
}

/// `owner -> number of rows` over the tables vpcnet writes.
pub fn owners() -> BTreeMap<String, usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nb = ovn::Client::connect(&nb_target())
            .await
            .expect("the box's NB DB answers");
        let mut out = BTreeMap::new();
        for table in [
            ovn::nb::logical_router::TABLE,
            ovn::nb::logical_router_port::TABLE,
            ovn::nb::logical_router_static_route::TABLE,
            ovn::nb::logical_router_policy::TABLE,
            ovn::nb::logical_switch::TABLE,
            ovn::nb::logical_switch_port::TABLE,
        ] {
            let mut txn = ovn::Txn::new(ovn::nb::SCHEMA_NAME);
            txn.select(table, &[], Some(&[ovn::owner::EXTERNAL_IDS]));
            let res = nb.transact(txn).await.expect("select");
            for row in res.raw_rows(0) {
                let ids: BTreeMap<String, String> = row
                    .get(ovn::owner::EXTERNAL_IDS)
                    .and_then(|v| ovn::datum::map_from_json(v).ok())
                    .unwrap_or_default();
                if let Some(o) = ids.get(ovn::owner::OWNER_KEY) {
                    *out.entry(o.clone()).or_insert(0) += 1;
                }
            }
        }
        out
    })
}

/// Names of the logical switch ports owned by pods of `namespace`.
pub fn pod_ports(namespace: &str) -> Vec<String> {
    owners()
        .keys()
        .filter(|o| o.starts_with(&format!("Pod/{namespace}/")))
        .cloned()
        .collect()
}
