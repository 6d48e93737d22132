//! Typed model of the OVN_Northbound database, generated from
//! `schema/ovn-nb.ovsschema` into `nb_model.rs` by `cargo xtask nb-model`:
//! one struct per table implementing [`Table`](crate::Table), and one module
//! per table with the table name (`TABLE`), one constant per column
//! (`logical_router::STATIC_ROUTES`) and one enum per enumerated column
//! (`logical_router_static_route::Policy::DstIp`, whose `as_str()` is the
//! string OVSDB stores).

use std::sync::OnceLock;

use crate::client::{Client, ClientOptions};
use crate::error::Result;
use crate::schema::DatabaseSchema;

#[path = "nb_model.rs"]
mod model;

pub use model::*;

/// The schema file the model was generated from.
pub const SCHEMA_JSON: &str = include_str!("../schema/ovn-nb.ovsschema");

/// The compiled-in schema, parsed once.
pub fn schema() -> &'static DatabaseSchema {
    static SCHEMA: OnceLock<DatabaseSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let v: serde_json::Value =
            serde_json::from_str(SCHEMA_JSON).expect("the checked-in schema is valid JSON");
        DatabaseSchema::from_json(&v).expect("the checked-in schema is a valid OVSDB schema")
    })
}

/// Connect to an OVN Northbound server, requiring a schema compatible with
/// the compiled-in model now and after every reconnection.
pub async fn connect(target: &str) -> Result<Client> {
    connect_with(target, ClientOptions::default()).await
}

/// [`connect`] with options; `required_schema` is set to the NB model.
pub async fn connect_with(target: &str, mut opts: ClientOptions) -> Result<Client> {
    opts.required_schema = Some(std::sync::Arc::new(schema().clone()));
    Client::connect_with(target, opts).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::Table;
    use crate::datum::Atom;

    /// Every value of every enumerated column of `T` decodes and encodes
    /// back to the same datum; returns how many columns were checked.
    fn check_enumerated<T: Table>() -> usize {
        let t = &schema().tables[T::TABLE];
        let mut checked = 0;
        for (column, ty) in &t.columns {
            let key_values = ty.key.enumeration.clone().unwrap_or_default();
            if key_values.is_empty() {
                continue;
            }
            checked += 1;
            for v in key_values {
                let datum = match &ty.value {
                    Some(value) => json!(["map", [[v, default_datum_atom(&value.atomic)]]]),
                    None if ty.is_scalar() => v.clone(),
                    None => json!(["set", [v]]),
                };
                let mut row = T::default().to_row();
                row.insert(column.clone(), datum.clone());
                let decoded = T::from_row(&row).unwrap_or_else(|e| panic!("{column}: {e}"));
                assert_eq!(
                    crate::datum::normalize(&decoded.to_row()[column], ty),
                    crate::datum::normalize(&datum, ty),
                    "{}.{column}",
                    T::TABLE
                );
            }
        }
        checked
    }

    fn default_datum_atom(atomic: &str) -> serde_json::Value {
        match atomic {
            "integer" => json!(1),
            "string" => json!("x"),
            other => panic!("no sample for {other}"),
        }
    }

    #[test]
    fn every_enumerated_value_round_trips() {
        let checked = check_enumerated::<Acl>()
            + check_enumerated::<Bfd>()
            + check_enumerated::<LoadBalancer>()
            + check_enumerated::<LogicalRouterPolicy>()
            + check_enumerated::<LogicalRouterStaticRoute>()
            + check_enumerated::<Meter>()
            + check_enumerated::<MeterBand>()
            + check_enumerated::<Mirror>()
            + check_enumerated::<Nat>()
            + check_enumerated::<Qos>();
        let in_schema = schema()
            .tables
            .values()
            .flat_map(|t| t.columns.values())
            .filter(|c| c.key.enumeration.is_some() && c.key.atomic == "string")
            .count();
        assert_eq!(
            checked, in_schema,
            "a table with enumerated columns is not checked"
        );
    }

    #[test]
    fn enumerated_values_spell_the_schema_strings() {
        use logical_router_static_route::Policy;
        assert_eq!(Policy::DstIp.as_str(), "dst-ip");
        assert_eq!(Policy::SrcIp.to_string(), "src-ip");
        assert_eq!(Policy::ALL, &[Policy::SrcIp, Policy::DstIp]);
        assert_eq!("dst-ip".parse::<Policy>().unwrap(), Policy::DstIp);
        assert!("dst".parse::<Policy>().is_err());
        assert_eq!(Policy::DstIp.to_json(), json!("dst-ip"));
        assert_eq!(Policy::from_json(&json!("src-ip")).unwrap(), Policy::SrcIp);
        assert!(Policy::from_json(&json!(1)).is_err());
        assert_eq!(
            serde_json::to_value(Policy::DstIp).unwrap(),
            json!("dst-ip")
        );
        assert_eq!(
            serde_json::from_value::<Policy>(json!("src-ip")).unwrap(),
            Policy::SrcIp
        );
        assert_eq!(nat::Type::DnatAndSnat.as_str(), "dnat_and_snat");
        assert_eq!(acl::Direction::FromLport.as_str(), "from-lport");
        const DST: &str = Policy::DstIp.as_str();
        assert_eq!(DST, "dst-ip");
    }

    #[test]
    fn rows_with_enumerated_columns_round_trip() {
        let route = LogicalRouterStaticRoute {
            ip_prefix: "0.0.0.0/0".into(),
            nexthop: "10.0.0.1".into(),
            policy: Some(logical_router_static_route::Policy::SrcIp),
            ..Default::default()
        };
        let row = route.to_row();
        assert_eq!(
            row[logical_router_static_route::POLICY],
            json!(["set", ["src-ip"]])
        );
        assert_eq!(LogicalRouterStaticRoute::from_row(&row).unwrap(), route);

        let lb = LoadBalancer {
            protocol: Some(load_balancer::Protocol::Udp),
            selection_fields: [
                load_balancer::SelectionFields::IpSrc,
                load_balancer::SelectionFields::TpDst,
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(LoadBalancer::from_row(&lb.to_row()).unwrap(), lb);

        // Enumerated map keys.
        let qos = Qos {
            direction: qos::Direction::ToLport,
            bandwidth: BTreeMap::from([(qos::Bandwidth::Rate, 1000), (qos::Bandwidth::Burst, 100)]),
            ..Default::default()
        };
        let row = qos.to_row();
        assert_eq!(Qos::from_row(&row).unwrap(), qos);

        // A value the schema does not know is an error naming the column.
        let mut row = Nat::default().to_row();
        row.insert(nat::TYPE.into(), json!("masquerade"));
        let e = Nat::from_row(&row).unwrap_err().to_string();
        assert!(e.contains("NAT.type"), "{e}");
    }
}
