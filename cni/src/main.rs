//! `vpcnet-cni`: a CNI plugin that plugs a pod into OVN through OVS `br-int`
//! with the address, MAC and gateway the vpcnet operator allocated (read from
//! the pod's `vpcnet.io/*` annotations). Usable as the primary plugin or as a
//! Multus delegate; speaks CNI 0.3.0 to 1.1.0 (ADD, DEL, CHECK, STATUS, GC,
//! VERSION).

mod config;
mod egress;
mod error;
mod k8s;
mod logging;
mod netns;
mod ovs;
mod plugin;
mod probe;
mod result;
mod veth;

use rscni_plugin::async_cni::Plugin;

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vpcnet-cni: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let about = format!(
        "vpcnet-cni {}: CNI plugin for vpcnet (OVN)",
        env!("CARGO_PKG_VERSION")
    );
    let plugin = Plugin::default().msg(&about);
    // `run` writes the result, or the CNI error JSON, to stdout.
    match rt.block_on(plugin.run(&plugin::VpcnetCni)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
