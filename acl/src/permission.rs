//! The permissions of operational users (PROTOCOL.md 6.1's table), as a small set the ACL
//! reads per packet without allocating.

/// One permission of PROTOCOL.md 6.1's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `broker:connect`: may connect to the operational endpoint.
    BrokerConnect,
    /// `data:read`: subscribe inside `ACCOUNT/#`.
    DataRead,
    /// `data:write`: publish inside `ACCOUNT/#`.
    DataWrite,
    /// `device:read`: subscribe inside `$EDC/ACCOUNT/+/MQTT/#`.
    DeviceRead,
    /// `device:manage`: publish Kura requests, subscribe to its own replies.
    DeviceManage,
}

impl Permission {
    /// Every permission, in the table's order.
    pub const ALL: [Permission; 5] = [
        Permission::BrokerConnect,
        Permission::DataRead,
        Permission::DataWrite,
        Permission::DeviceRead,
        Permission::DeviceManage,
    ];

    /// The name users and the API spell it with (`data:read`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::BrokerConnect => crate::PERMISSION_BROKER_CONNECT,
            Permission::DataRead => "data:read",
            Permission::DataWrite => "data:write",
            Permission::DeviceRead => "device:read",
            Permission::DeviceManage => "device:manage",
        }
    }

    /// Parses a name spelled exactly as [`Permission::as_str`].
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`Permission`]s; names that are not permissions of the table (e.g. `vpn:connect`)
/// are simply not in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    /// The permissions named in `names`; unknown names grant nothing.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Permissions {
        Permissions(
            names
                .into_iter()
                .filter_map(Permission::parse)
                .fold(0, |bits, p| bits | p.bit()),
        )
    }

    /// The set holding exactly `permissions`.
    pub fn of(permissions: &[Permission]) -> Permissions {
        Permissions(permissions.iter().fold(0, |bits, p| bits | p.bit()))
    }

    /// Whether `p` is in the set.
    pub fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_grant_nothing() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(Permission::parse("Data:read"), None);
        let set = Permissions::from_names(["data:read", "vpn:connect", "x", "device:manage"]);
        assert_eq!(
            set,
            Permissions::of(&[Permission::DataRead, Permission::DeviceManage])
        );
        assert!(!set.has(Permission::BrokerConnect));
        assert_eq!(Permissions::default(), Permissions::from_names([]));
    }
}
