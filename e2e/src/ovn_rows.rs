//! Reading the box's OVN Northbound DB: which rows carry a vpcnet owner.

use std::collections::BTreeMap;

/// The box's Northbound DB (`OVN_NB_DB`, else every member of the box's
/// RAFT cluster: the client keeps to the leader).
pub fn nb_target() -> String {
    std::env::var("OVN_NB_DB").unwrap_or_else(|_| central_remotes("nb"))
}

/// Every member's socket of the box's clustered `nb` or `sb` database, as
/// `central_remotes` in `e2e/box/ovn.sh` lists them.
pub fn central_remotes(db: &str) -> String {
    let members: usize = crate::box_env::get("OVN_RAFT_MEMBERS")
        .parse()
        .expect("OVN_RAFT_MEMBERS is a number");
    (1..=members)
        .map(|i| {
            let file = if i == 1 {
                format!("ovn/ovn{db}_db.sock")
            } else {
                format!("ovn/ovn{db}_db-{i}.sock")
            };
            format!("unix:{}", crate::box_dir().join(file).display())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn nb() -> ovn::Client {
    ovn::Client::connect(&nb_target())
        .await
        .expect("the box's NB DB answers")
}

/// `owner -> number of distinct rows` over the tables vpcnet writes: the
/// select asks for `external_ids` only, and OVSDB returns identical result
/// rows once, so an owner's rows of one table whose `external_ids` are the
/// same count once there (count exact rows with [`lb_rows`] and the like).
pub fn owners() -> BTreeMap<String, usize> {
    block_on(async {
        let nb = nb().await;
        let mut out = BTreeMap::new();
        for table in [
            ovn::nb::logical_router::TABLE,
            ovn::nb::logical_router_port::TABLE,
            ovn::nb::logical_router_static_route::TABLE,
            ovn::nb::logical_router_policy::TABLE,
            ovn::nb::logical_switch::TABLE,
            ovn::nb::logical_switch_port::TABLE,
            ovn::nb::load_balancer::TABLE,
            ovn::nb::port_group::TABLE,
            ovn::nb::acl::TABLE,
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

/// Logical_Switch_Port rows owned by pods of `namespace`, one entry per row
/// (`_uuid` is selected too, so two rows with the same owner are two
/// entries): `owner -> rows`.
pub fn pod_port_rows(namespace: &str) -> BTreeMap<String, usize> {
    block_on(async {
        let nb = nb().await;
        let mut txn = ovn::Txn::new(ovn::nb::SCHEMA_NAME);
        txn.select(
            ovn::nb::logical_switch_port::TABLE,
            &[],
            Some(&["_uuid", ovn::owner::EXTERNAL_IDS]),
        );
        let res = nb.transact(txn).await.expect("select");
        let prefix = format!("Pod/{namespace}/");
        let mut out = BTreeMap::new();
        for row in res.raw_rows(0) {
            let ids: BTreeMap<String, String> = row
                .get(ovn::owner::EXTERNAL_IDS)
                .and_then(|v| ovn::datum::map_from_json(v).ok())
                .unwrap_or_default();
            if let Some(o) = ids
                .get(ovn::owner::OWNER_KEY)
                .filter(|o| o.starts_with(&prefix))
            {
                *out.entry(o.clone()).or_insert(0) += 1;
            }
        }
        out
    })
}

/// One load balancer row of ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbRow {
    /// Its uuid.
    pub uuid: String,
    /// Its `vpcnet.io/owner`.
    pub owner: String,
    /// Its `vips`.
    pub vips: BTreeMap<String, String>,
}

/// Every Load_Balancer row that has a vpcnet owner, sorted by owner.
pub fn lb_rows() -> Vec<LbRow> {
    block_on(async {
        let nb = nb().await;
        let mut txn = ovn::Txn::new(ovn::nb::SCHEMA_NAME);
        txn.select_all::<ovn::nb::LoadBalancer>();
        let res = nb.transact(txn).await.expect("select");
        let mut rows: Vec<LbRow> = res
            .raw_rows(0)
            .iter()
            .filter_map(|r| <ovn::nb::LoadBalancer as ovn::Table>::from_row(r).ok())
            .filter_map(|lb| {
                Some(LbRow {
                    owner: lb.external_ids.get(ovn::owner::OWNER_KEY)?.clone(),
                    uuid: lb.uuid.as_str().to_string(),
                    vips: lb.vips,
                })
            })
            .collect();
        rows.sort_by(|a, b| (&a.owner, &a.uuid).cmp(&(&b.owner, &b.uuid)));
        rows
    })
}

fn groups() -> Vec<ovn::nb::LoadBalancerGroup> {
    block_on(async {
        let nb = nb().await;
        let mut txn = ovn::Txn::new(ovn::nb::SCHEMA_NAME);
        txn.select_all::<ovn::nb::LoadBalancerGroup>();
        let res = nb.transact(txn).await.expect("select");
        res.raw_rows(0)
            .iter()
            .filter_map(|r| <ovn::nb::LoadBalancerGroup as ovn::Table>::from_row(r).ok())
            .collect()
    })
}

/// Names of every Load_Balancer_Group.
pub fn lb_groups() -> Vec<String> {
    groups().into_iter().map(|g| g.name).collect()
}

/// Owners of the members of VPC `vpc`'s group, sorted.
pub fn lb_group_members(vpc: &str) -> Vec<String> {
    let name = vpcnet_api::contract::naming::lb_group(vpc);
    let Some(group) = groups().into_iter().find(|g| g.name == name) else {
        return Vec::new();
    };
    let mut owners: Vec<String> = lb_rows()
        .into_iter()
        .filter(|r| group.load_balancer.iter().any(|u| u.as_str() == r.uuid))
        .map(|r| r.owner)
        .collect();
    owners.sort();
    owners
}

/// One Port_Group of ours, as the box's NB holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGroupRow {
    /// Its uuid.
    pub uuid: String,
    /// The names of its ports.
    pub ports: Vec<String>,
    /// `uuid -> (priority, match)` of its ACLs.
    pub acls: BTreeMap<String, (i64, String)>,
}

/// The Port_Group called `name`, with its ports by name and its ACLs.
pub fn port_group(name: &str) -> Option<PortGroupRow> {
    block_on(async {
        let nb = nb().await;
        let mut txn = ovn::Txn::new(ovn::nb::SCHEMA_NAME);
        txn.select_all::<ovn::nb::PortGroup>();
        txn.select_all::<ovn::nb::LogicalSwitchPort>();
        txn.select_all::<ovn::nb::Acl>();
        let res = nb.transact(txn).await.expect("select");
        let pg = res
            .rows::<ovn::nb::PortGroup>(0)
            .expect("port groups")
            .into_iter()
            .find(|g| g.name == name)?;
        let lsps = res.rows::<ovn::nb::LogicalSwitchPort>(1).expect("ports");
        let acls = res.rows::<ovn::nb::Acl>(2).expect("acls");
        let mut ports: Vec<String> = lsps
            .into_iter()
            .filter(|p| pg.ports.contains(&p.uuid))
            .map(|p| p.name)
            .collect();
        ports.sort();
        Some(PortGroupRow {
            uuid: pg.uuid.as_str().to_string(),
            ports,
            acls: acls
                .into_iter()
                .filter(|a| pg.acls.contains(&a.uuid))
                .map(|a| (a.uuid.as_str().to_string(), (a.priority, a.r#match)))
                .collect(),
        })
    })
}

/// The addresses of the Southbound `Address_Set` called `name` (ovn-northd
/// derives `<port group>_ip4` from a Port_Group's ports), if it exists.
pub fn sb_address_set(name: &str) -> Option<Vec<String>> {
    let target = std::env::var("OVN_SB_DB").unwrap_or_else(|_| central_remotes("sb"));
    block_on(async {
        let sb = ovn::Client::connect(&target)
            .await
            .expect("the box's SB DB answers");
        let mut txn = ovn::Txn::new("OVN_Southbound");
        txn.select(
            "Address_Set",
            &[ovn::ops::Cond::eq("name", name)],
            Some(&["addresses"]),
        );
        let res = sb.transact(txn).await.expect("select");
        let row = res.raw_rows(0).into_iter().next()?;
        let mut out: Vec<String> = row
            .get("addresses")
            .map(ovn::datum::set_elements)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        out.sort();
        Some(out)
    })
}
