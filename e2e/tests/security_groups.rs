//! SecurityGroups with real traffic on the box: a matrix of pods in sg-web
//! (tcp/80 from anywhere), sg-db (tcp/3306 from sg-web only) and no group,
//! checked pair by pair over TCP and ICMP; a drop at a smaller priority
//! beats an allow and swapping them swaps the outcome; memberships follow
//! pods; an egress-only group's pods start and reach their gateway; editing
//! a rule keeps an established connection it still allows; leaving a group
//! restores reachability; an operator restart changes nothing; deleting
//! everything leaves no Port_Group or ACL. And a tenant can neither bind
//! nor name another namespace's group, and bad rules are refused.

use std::thread;
use std::time::{Duration, Instant};

use vpcnet_api::contract::annotations::SECURITY_GROUPS;
use vpcnet_api::contract::naming;
use vpcnet_e2e::cluster::{Cleanup, OPERATOR_NS, TESTAPP_IMAGE, operator_selector};
use vpcnet_e2e::kubectl::Kubectl;
use vpcnet_e2e::ovn_rows;
use vpcnet_e2e::tenant::{Tenant, platform};

const READY: Duration = Duration::from_secs(180);
const CONVERGE: Duration = Duration::from_secs(20);

/// Keeps a connection on port 7000 open and echoes lines (perl-base is in every Debian
/// image, the test app answers once and closes).
const ECHO_SERVER: &str = "use IO::Socket::INET; $SIG{CHLD}='IGNORE'; \
    my $s = IO::Socket::INET->new(LocalPort => 7000, Listen => 16, ReuseAddr => 1) or die $!; \
    while (my $c = $s->accept) { if (!fork) { while (<$c>) { print $c $_ } exit } close $c }";

/// One connection for `ARGV[1]` seconds, a line every 100 ms; prints
/// `ok <n>` or `lost after <n>`.
const ECHO_CLIENT: &str = "use IO::Socket::INET; \
    my $c = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => 7000, Timeout => 2) or die \"connect: $!\\n\"; \
    $c->autoflush(1); my $end = time + $ARGV[1]; my $n = 0; \
    while (time < $end) { print $c \"$n\\n\"; my $r; \
      eval { local $SIG{ALRM} = sub { die \"timeout\\n\" }; alarm 2; $r = <$c>; alarm 0; }; \
      if (!defined $r) { print \"lost after $n\\n\"; exit 1 } $n++; select(undef, undef, undef, 0.1) } \
    print \"ok $n\\n\";";

/// A pod answering on 80 and 3306 (the test app) and on 7000 (echo), in
/// `groups` if given.
fn server_pod(ns: &str, name: &str, groups: Option<&str>) -> String {
    let ann = groups
        .map(|g| format!("\n  annotations: {{{SECURITY_GROUPS}: \"{g}\"}}"))
        .unwrap_or_default();
    let c = |n: &str, args: &str| {
        format!("  - {{name: {n}, image: {TESTAPP_IMAGE}, imagePullPolicy: Never, {args}}}\n")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}{ann}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n{}{}{}",
        c("p80", "args: [\"80\"]"),
        c("p3306", "args: [\"3306\"]"),
        c(
            "echo",
            &format!(
                "command: [perl, -e, {}]",
                serde_json::to_string(ECHO_SERVER).unwrap()
            )
        ),
    )
}

/// A rule as YAML: `what` is `tcp/80`, `udp/53`, `icmp` or `all`; `from`
/// an address or `sg:<group>`.
fn rule(what: &str, from: &str, priority: u8, policy: &str) -> String {
    let (proto, ports) = match what.split_once('/') {
        Some((p, port)) => (p, format!(", portRangeMin: {port}, portRangeMax: {port}")),
        None => (what, String::new()),
    };
    let remote = match from.strip_prefix("sg:") {
        Some(g) => format!("remoteType: securityGroup, remoteSecurityGroup: {g}"),
        None => format!("remoteType: address, remoteAddress: \"{from}\""),
    };
    format!("{{protocol: {proto}{ports}, {remote}, priority: {priority}, policy: {policy}}}")
}

fn group(ns: &str, name: &str, ingress: &[String], egress: &[String]) -> String {
    format!(
        "apiVersion: vpcnet.io/v1\nkind: SecurityGroup\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  ingressRules: [{}]\n  egressRules: [{}]\n",
        ingress.join(", "),
        egress.join(", ")
    )
}

/// What one attempt on a path saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    /// An answer.
    Open,
    /// Nothing at all: dropped (a refused connection is not a drop).
    Dropped,
    /// Anything else (refused, an exec failure): never what a check wants.
    Other(String),
}

/// One connection from `from` to `ip:port` (curl exits 28 on a timeout).
fn tcp(k: &Kubectl, ns: &str, from: &str, ip: &str, port: u16) -> Seen {
    let url = format!("http://{ip}:{port}/");
    let out = k.exec(ns, from, &["curl", "-s", "-S", "--max-time", "2", &url]);
    if out.ok && out.stdout.contains("server=") {
        Seen::Open
    } else if out.stderr.contains("curl: (28)") {
        Seen::Dropped
    } else {
        Seen::Other(out.stderr.trim().to_string())
    }
}

/// One echo request from `from` to `ip`.
fn ping(k: &Kubectl, ns: &str, from: &str, ip: &str) -> Seen {
    let out = k.exec(ns, from, &["ping", "-c", "1", "-W", "2", ip]);
    if out.ok {
        Seen::Open
    } else if out.stdout.contains("0 received") {
        Seen::Dropped
    } else {
        Seen::Other(format!("{} {}", out.stdout.trim(), out.stderr.trim()))
    }
}

/// A check of one path: `(from, to-address, port or None for ICMP, open?)`.
type Check<'a> = (&'a str, String, Option<u16>, bool);

fn probe(k: &Kubectl, ns: &str, c: &Check) -> Seen {
    match c.2 {
        Some(port) => tcp(k, ns, c.0, &c.1, port),
        None => ping(k, ns, c.0, &c.1),
    }
}

fn open(k: &Kubectl, ns: &str, from: &str, ip: &str, port: u16) -> bool {
    tcp(k, ns, from, ip, port) == Seen::Open
}

/// Runs every check concurrently until each sees what it should, then
/// every check once more (so a path caught mid-change does not pass);
/// panics naming the paths that do not.
fn expect(k: &Kubectl, ns: &str, what: &str, checks: &[Check]) {
    let deadline = Instant::now() + CONVERGE;
    let want = |c: &Check| if c.3 { Seen::Open } else { Seen::Dropped };
    let run = |until: Option<Instant>| -> Vec<String> {
        thread::scope(|s| {
            let handles: Vec<_> = checks
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        loop {
                            let got = probe(k, ns, c);
                            if got == want(c) || until.is_none_or(|t| Instant::now() > t) {
                                return (c, got);
                            }
                            thread::sleep(Duration::from_millis(200));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|(c, got)| *got != want(c))
                .map(|(c, got)| {
                    format!(
                        "{} -> {}:{:?} saw {got:?}, want open={}",
                        c.0, c.1, c.2, c.3
                    )
                })
                .collect()
        })
    };
    let wrong = run(Some(deadline));
    assert!(wrong.is_empty(), "{what}: {wrong:#?}");
    let wrong = run(None);
    assert!(wrong.is_empty(), "{what}, checked again: {wrong:#?}");
}

fn annotate(k: &Kubectl, ns: &str, pod: &str, groups: Option<&str>) {
    let value = match groups {
        Some(g) => format!("{SECURITY_GROUPS}={g}"),
        None => format!("{SECURITY_GROUPS}-"),
    };
    k.ok(&["annotate", "--overwrite", "-n", ns, "pod", pod, &value]);
}

fn ports_of(ns: &str, group: &str) -> Vec<String> {
    ovn_rows::port_group(&naming::security_group_port_group(ns, group))
        .map(|g| g.ports)
        .unwrap_or_default()
}

fn status(k: &Kubectl, ns: &str, group: &str, path: &str) -> String {
    k.field("securitygroup", Some(ns), group, path)
}

#[test]
fn groups_priorities_memberships_and_rule_edits_hold_with_real_traffic() {
    let k = Kubectl::for_box();
    let started = Instant::now();
    let ns = "e2e-sg";
    let t = Tenant::create(&k, ns);
    let mut c = Cleanup::new(&k);
    platform(&k, &mut c, ns, "10.0.1.0/24");
    let tk = t.kubectl();
    let anywhere = "0.0.0.0/0";
    let egress_all = [rule("all", anywhere, 100, "allow")];
    // sg-web: tcp/80 from anywhere, and the echo port; sg-db: tcp/3306 from
    // sg-web only; sg-out: egress only (tcp/80 anywhere), no ingress.
    tk.must_apply(&format!(
        "{}---\n{}---\n{}",
        group(
            ns,
            "sg-web",
            &[
                rule("tcp/80", anywhere, 50, "allow"),
                rule("tcp/7000", anywhere, 60, "allow")
            ],
            &egress_all
        ),
        group(
            ns,
            "sg-db",
            &[rule("tcp/3306", "sg:sg-web", 50, "allow")],
            &egress_all
        ),
        group(ns, "sg-out", &[], &[rule("tcp/80", anywhere, 50, "allow")]),
    ));
    for (name, groups) in [
        ("web", Some("sg-web")),
        ("db", Some("sg-db")),
        ("none", None),
        ("out", Some("sg-out")),
    ] {
        tk.must_apply(&server_pod(ns, name, groups));
    }
    k.wait_ready(ns, &["web", "db", "none", "out"], READY);
    let ip = |p: &str| k.pod_ip(ns, p);
    let (web, db, none, out) = (ip("web"), ip("db"), ip("none"), ip("out"));
    let gw = "10.0.1.1".to_string();

    // The matrix: every pair, each port, and ICMP.
    let matrix: Vec<Check> = vec![
        ("none", web.clone(), Some(80), true),
        ("db", web.clone(), Some(80), true),
        ("none", web.clone(), Some(3306), false),
        ("db", web.clone(), Some(3306), false),
        ("none", web.clone(), None, false),
        ("web", db.clone(), Some(3306), true),
        ("none", db.clone(), Some(3306), false),
        ("web", db.clone(), Some(80), false),
        ("none", db.clone(), Some(80), false),
        ("web", db.clone(), None, false),
        ("web", none.clone(), Some(80), true),
        ("web", none.clone(), Some(3306), true),
        ("db", none.clone(), Some(3306), true),
        ("db", none.clone(), None, true),
        ("web", none.clone(), None, true),
        // Egress-only: started (Ready above), reaches its gateway and what
        // its rule allows, nothing else; and nothing reaches it.
        ("out", gw.clone(), None, true),
        ("out", none.clone(), Some(80), true),
        ("out", none.clone(), Some(3306), false),
        ("none", out.clone(), Some(80), false),
        // Members reach their own gateway whatever their rules.
        ("db", gw.clone(), None, true),
        ("web", gw.clone(), None, true),
    ];
    expect(&k, ns, "the matrix", &matrix);
    eprintln!("matrix done at {:?}", started.elapsed());
    k.eventually(CONVERGE, "sg-web's status to count its member", || {
        status(&k, ns, "sg-web", "{.status.members}") == "1"
    });
    assert_eq!(
        status(&k, ns, "sg-web", "{.status.portGroup}"),
        naming::security_group_port_group(ns, "sg-web")
    );
    assert_eq!(
        status(
            &k,
            ns,
            "sg-db",
            "{.status.conditions[?(@.type==\"Ready\")].reason}"
        ),
        "Programmed"
    );

    // A long-lived connection to web's echo port, while a rule of the same
    // group is edited (tcp/7000's source narrowed to the VPC, still
    // allowing it) and another is added.
    let held = thread::scope(|s| {
        let h = s.spawn(|| k.exec(ns, "none", &["perl", "-e", ECHO_CLIENT, &web, "6"]));
        thread::sleep(Duration::from_millis(1500));
        tk.must_apply(&group(
            ns,
            "sg-web",
            &[
                rule("tcp/80", anywhere, 50, "allow"),
                rule("tcp/7000", "10.0.0.0/16", 60, "allow"),
                rule("icmp", anywhere, 70, "allow"),
            ],
            &egress_all,
        ));
        h.join().unwrap()
    });
    assert!(
        held.ok && held.stdout.starts_with("ok "),
        "the established connection survived the edit: {} {}",
        held.stdout,
        held.stderr
    );
    expect(
        &k,
        ns,
        "after the edit",
        &[("none", web.clone(), None, true)],
    );

    // Priority: a drop at 10 beats the allow at 20 for the same traffic;
    // swapped, the allow wins.
    let prio = |drop: u8, allow: u8| {
        tk.must_apply(&group(
            ns,
            "sg-web",
            &[
                rule("tcp/80", anywhere, allow, "allow"),
                rule("tcp/80", anywhere, drop, "drop"),
            ],
            &egress_all,
        ));
    };
    prio(10, 20);
    expect(
        &k,
        ns,
        "drop 10 over allow 20",
        &[("none", web.clone(), Some(80), false)],
    );
    prio(20, 10);
    expect(
        &k,
        ns,
        "allow 10 over drop 20",
        &[("none", web.clone(), Some(80), true)],
    );
    eprintln!("priorities done at {:?}", started.elapsed());

    // Membership follows pods: a new pod in sg-web reaches db:3306 (sg-db's
    // remote rule) within 2 s of running; deleted, its port leaves.
    tk.must_apply(&server_pod(ns, "web2", Some("sg-web")));
    k.wait_ready(ns, &["web2"], READY);
    let running = Instant::now();
    k.eventually(Duration::from_secs(10), "web2 to reach db:3306", || {
        open(&k, ns, "web2", &db, 3306)
    });
    let took = running.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "web2 reached db after {took:?}"
    );
    assert!(ports_of(ns, "sg-web").contains(&naming::pod_port(ns, "web2")));
    let web2 = k.pod_ip(ns, "web2");
    let address_set = format!("{}_ip4", naming::security_group_port_group(ns, "sg-web"));
    let mut both = vec![web.clone(), web2.clone()];
    both.sort();
    assert_eq!(ovn_rows::sb_address_set(&address_set), Some(both));
    k.eventually(CONVERGE, "two members in status", || {
        status(&k, ns, "sg-web", "{.status.members}") == "2"
    });
    k.ok(&["delete", "pod", "-n", ns, "web2", "--wait=true"]);
    k.eventually(CONVERGE, "web2's port out of sg-web", || {
        ports_of(ns, "sg-web") == vec![naming::pod_port(ns, "web")]
    });
    k.eventually(
        CONVERGE,
        "web2's address out of sg-web's address set",
        || ovn_rows::sb_address_set(&address_set) == Some(vec![web.clone()]),
    );

    // Leaving its only group opens db again; the base group lets it go.
    annotate(tk, ns, "db", None);
    expect(
        &k,
        ns,
        "db out of every group",
        &[
            ("none", db.clone(), Some(80), true),
            ("none", db.clone(), None, true),
        ],
    );
    let base = naming::security_base_port_group(&format!("{ns}-net"));
    assert!(
        !ovn_rows::port_group(&base)
            .unwrap()
            .ports
            .contains(&naming::pod_port(ns, "db"))
    );
    eprintln!("memberships done at {:?}", started.elapsed());

    // A restarted operator rewrites nothing: the same rows, the same uuids.
    let snapshot = || {
        ["sg-web", "sg-db", "sg-out"]
            .map(|g| ovn_rows::port_group(&naming::security_group_port_group(ns, g)))
            .into_iter()
            .chain([ovn_rows::port_group(&base)])
            .collect::<Vec<_>>()
    };
    let before = snapshot();
    k.ok(&[
        "delete",
        "pod",
        "-n",
        OPERATOR_NS,
        "-l",
        &operator_selector(),
        "--wait=true",
    ]);
    k.ok(&[
        "wait",
        "-n",
        OPERATOR_NS,
        "--for=condition=Ready",
        "pod",
        "-l",
        &operator_selector(),
        "--timeout=120s",
    ]);
    // The new leader has reconciled by the time it follows a fresh change.
    annotate(tk, ns, "none", Some("sg-out"));
    k.eventually(CONVERGE, "the new operator follows an annotation", || {
        ports_of(ns, "sg-out").len() == 2
    });
    annotate(tk, ns, "none", None);
    k.eventually(CONVERGE, "and back", || ports_of(ns, "sg-out").len() == 1);
    assert_eq!(before, snapshot(), "no row changed across a restart");
    eprintln!("restart done at {:?}", started.elapsed());

    // Deleting pods and groups leaves no Port_Group and no ACL of theirs;
    // the subnet's base rows go with the subnet.
    k.ok(&["delete", "pods", "--all", "-n", ns, "--wait=true"]);
    tk.ok(&[
        "delete",
        "securitygroups",
        "--all",
        "-n",
        ns,
        "--wait=true",
        "--timeout=60s",
    ]);
    let ours = |prefix: &str| {
        ovn_rows::owners()
            .keys()
            .filter(|o| o.starts_with(prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        ours(&format!("SecurityGroup/{ns}/")).is_empty(),
        "{:?}",
        ours("SecurityGroup/")
    );
    drop(c);
    k.eventually(CONVERGE, "the subnet's base rows gone", || {
        ours(&format!("SecuritySubnet//{ns}-net")).is_empty()
    });
    eprintln!("suite body took {:?}", started.elapsed());
}

#[test]
fn a_tenant_cannot_bind_or_name_another_namespaces_group_and_bad_rules_are_refused() {
    let k = Kubectl::for_box();
    let (a, b) = ("e2e-sg-a", "e2e-sg-b");
    let ta = Tenant::create(&k, a);
    let tb = Tenant::create(&k, b);
    let mut c = Cleanup::new(&k);
    platform(&k, &mut c, a, "10.0.1.0/24");
    platform(&k, &mut c, b, "10.0.1.0/24");
    let anywhere = "0.0.0.0/0";
    tb.kubectl().must_apply(&group(
        b,
        "secret",
        &[rule("tcp/80", anywhere, 10, "allow")],
        &[],
    ));
    ta.kubectl().must_apply(&group(
        a,
        "mine",
        &[rule("tcp/80", anywhere, 10, "allow")],
        &[],
    ));
    ta.kubectl().must_apply(&server_pod(a, "p", Some("mine")));
    k.wait_ready(a, &["p"], READY);
    k.eventually(CONVERGE, "p in its own group", || {
        ports_of(a, "mine") == vec![naming::pod_port(a, "p")]
    });

    // Naming b's group: refused with an Event; p keeps its own group and
    // never joins b's.
    annotate(ta.kubectl(), a, "p", Some(&format!("mine,{b}/secret")));
    k.eventually(CONVERGE, "an Event on the pod", || {
        k.ok(&[
            "get",
            "events",
            "-n",
            a,
            "--field-selector",
            "involvedObject.name=p,reason=ForeignSecurityGroup",
            "-o",
            "name",
        ])
        .contains("event")
    });
    assert_eq!(ports_of(a, "mine"), vec![naming::pod_port(a, "p")]);
    assert!(ports_of(b, "secret").is_empty(), "never in b's group");
    // Naming a group that does not exist: the same, never silently open.
    annotate(ta.kubectl(), a, "p", Some("nope"));
    k.eventually(CONVERGE, "a not-found Event", || {
        k.ok(&[
            "get",
            "events",
            "-n",
            a,
            "--field-selector",
            "involvedObject.name=p,reason=SecurityGroupNotFound",
            "-o",
            "name",
        ])
        .contains("event")
    });
    assert_eq!(
        ports_of(a, "mine"),
        vec![naming::pod_port(a, "p")],
        "still in mine"
    );

    // A remote group of another namespace cannot even be written.
    let foreign = ta.kubectl().apply_yaml(&group(
        a,
        "peer",
        &[rule("tcp/80", &format!("sg:{b}/secret"), 10, "allow")],
        &[],
    ));
    assert!(
        !foreign.ok,
        "a remote group in another namespace is refused at admission"
    );
    // A missing remote group of the same namespace: Ready=False, nothing
    // programmed.
    ta.kubectl().must_apply(&group(
        a,
        "peer",
        &[rule("tcp/80", "sg:ghost", 10, "allow")],
        &[],
    ));
    k.eventually(CONVERGE, "peer refused", || {
        status(
            &k,
            a,
            "peer",
            "{.status.conditions[?(@.type==\"Ready\")].reason}",
        ) == "RemoteGroupNotFound"
    });
    assert!(ovn_rows::port_group(&naming::security_group_port_group(a, "peer")).is_none());

    // Bad rules are refused at admission.
    for (why, bad) in [
        (
            "port 0",
            "{protocol: tcp, portRangeMin: 0, portRangeMax: 80, remoteType: address, remoteAddress: 0.0.0.0/0, priority: 1, policy: allow}",
        ),
        (
            "port 70000",
            "{protocol: udp, portRangeMin: 1, portRangeMax: 70000, remoteType: address, remoteAddress: 0.0.0.0/0, priority: 1, policy: allow}",
        ),
        (
            "min > max",
            "{protocol: tcp, portRangeMin: 90, portRangeMax: 80, remoteType: address, remoteAddress: 0.0.0.0/0, priority: 1, policy: allow}",
        ),
        (
            "address with a group",
            "{protocol: tcp, remoteType: address, remoteAddress: 0.0.0.0/0, remoteSecurityGroup: mine, priority: 1, policy: allow}",
        ),
        (
            "group without one",
            "{protocol: tcp, remoteType: securityGroup, priority: 1, policy: allow}",
        ),
        (
            "priority 0",
            "{protocol: tcp, remoteType: address, remoteAddress: 0.0.0.0/0, priority: 0, policy: allow}",
        ),
    ] {
        let out = ta
            .kubectl()
            .apply_yaml(&group(a, "bad", &[bad.to_string()], &[]));
        assert!(!out.ok, "{why} must be refused at admission");
    }
    // Pods first: the subnets go before the namespaces.
    k.ok(&["delete", "pods", "--all", "-n", a, "--wait=true"]);
    drop(c);
}
