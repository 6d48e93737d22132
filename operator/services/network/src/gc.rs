//! Which of the network service's OVN owners are gone, and removing what
//! they left. A deleted pod's port is kept while its StatefulSet will
//! recreate it (it keeps its address).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use ovn::Owner;
use vpcnet_api::{Subnet, Vpc};
use vpcnet_runtime::service::Ids;

use crate::{Ctx, Result, pod};

/// The OVN owner kinds of the network service.
pub const OWNER_KINDS: &[&str] = &["Pod", "Subnet", "Vpc"];

/// Of `owners`, those not in `alive` (pure).
pub fn gone<'a>(owners: &'a BTreeMap<String, Ids>, alive: &BTreeSet<String>) -> Vec<&'a String> {
    owners.keys().filter(|o| !alive.contains(*o)).collect()
}

/// Removes what gone owners left; returns them.
pub async fn collect(ctx: &Ctx, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>> {
    let mut alive = BTreeSet::new();
    let mut pods = BTreeSet::new();
    for p in Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
    {
        alive.insert(pod::owner(&p.namespace().unwrap_or_default(), &p.name_any(), "").id());
        pods.insert(pod::notice::key(&p));
    }
    // A deletion the watch missed leaves no notice behind.
    ctx.notices.retain(&pods);
    for s in Api::<Subnet>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
    {
        alive.insert(Owner::cluster("Subnet", &s.name_any()).id());
    }
    for v in Api::<Vpc>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
    {
        alive.insert(Owner::cluster("Vpc", &v.name_any()).id());
    }
    let mut out = Vec::new();
    for owner in gone(owners, &alive) {
        let parts: Vec<&str> = owner.splitn(3, '/').collect();
        let [kind, ns, name] = parts[..] else {
            continue;
        };
        if kind == "Pod" {
            let sts = owners[owner].get(pod::STATEFULSET_KEY).map(String::as_str);
            if !pod::deletion::release(ctx, ns, name, sts).await? {
                continue;
            }
        } else {
            ovn::owner::delete_owned(&ctx.nb, &Owner::new(kind, ns, name)).await?;
        }
        out.push(owner.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_ids_match_what_the_reconcilers_stamp() {
        // The liveness sets above are built from the same constructors the
        // reconcilers stamp rows with; a drift would collect live rows.
        assert_eq!(pod::owner("a", "web", "v").id(), "Pod/a/web");
        assert_eq!(crate::vpc::owner("v").id(), "Vpc//v");
        let owners: BTreeMap<String, Ids> = ["Pod/a/web", "Pod/a/gone", "Vpc//v"]
            .iter()
            .map(|o| (o.to_string(), Ids::new()))
            .collect();
        let alive = BTreeSet::from(["Pod/a/web".to_string(), "Vpc//v".to_string()]);
        assert_eq!(gone(&owners, &alive), vec!["Pod/a/gone"]);
    }
}
