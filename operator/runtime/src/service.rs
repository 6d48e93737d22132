//! How a service plugs into the runtime. Adding a service is implementing
//! this trait in a crate of its own and registering it in `main`; no other
//! service and no runtime file changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use vpcnet_ipam::Holder;

use crate::Result;
use crate::rebuild::Found;
use crate::runtime::Runtime;

/// `external_ids` of one OVN row.
pub type Ids = BTreeMap<String, String>;

/// A tenant-facing service of the operator.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// Its name, for logs.
    fn name(&self) -> &'static str;

    /// The OVN tables it writes rows into; the garbage collection looks there.
    fn tables(&self) -> &'static [&'static str];

    /// The owner kinds (`ovn::Owner` kinds) of the rows it writes; the
    /// garbage collection asks it about owners of these kinds only.
    fn owner_kinds(&self) -> &'static [&'static str];

    /// The holder kinds it allocates addresses for (see [`Holder::kind`]).
    fn holder_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its part of the address state at start: pools it defines and the
    /// addresses it finds held. Nothing is allocated before every service
    /// has answered.
    async fn rebuild(&self, rt: &Runtime, found: &mut Found) -> Result<()>;

    /// Of `owners` (ids of owners of its kinds that own OVN rows, with one
    /// row's `external_ids`), the ones whose objects are gone, after
    /// removing what each left. An owner whose rows must stay (a pod its
    /// StatefulSet recreates) is left out.
    async fn collect(&self, rt: &Runtime, owners: &BTreeMap<String, Ids>) -> Result<Vec<String>>;

    /// Of `holders` (of its holder kinds), the ones whose objects are gone
    /// without their cleanup having run; the runtime frees them.
    async fn orphaned_holders(&self, _rt: &Runtime, _holders: &[Holder]) -> Result<Vec<Holder>> {
        Ok(Vec::new())
    }

    /// Runs its controllers until the runtime shuts down; reconciles in
    /// flight finish before this returns.
    async fn run(self: Arc<Self>, rt: Arc<Runtime>);
}
