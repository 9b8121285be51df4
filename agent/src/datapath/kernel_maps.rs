//! [`PolicyMaps`] over the kernel's maps: the only place policy writes meet aya.

use aya::{
    Pod,
    maps::{Array, HashMap, LpmTrie, MapData, MapError as AyaMapError, lpm_trie::Key},
};
use filter_common::{
    AclBits, AddrKey, CidrKey, GroupBitsKey, IfaceConfig, IfaceKey, LocalAddrKey, MemberValue,
    PortKey, RuleBitmap, map_names,
};

use crate::maps::{Lpm, MapError, PolicyMaps, Table};

fn kernel_error(map: &'static str, operation: &'static str) -> impl Fn(AyaMapError) -> MapError {
    move |error| MapError::Kernel {
        map,
        operation,
        source: Box::new(error),
    }
}

fn is_missing(error: &AyaMapError) -> bool {
    matches!(
        error,
        AyaMapError::KeyNotFound | AyaMapError::ElementNotFound
    )
}

pub struct KernelHash<K, V> {
    pub map: HashMap<MapData, K, V>,
    pub name: &'static str,
}

impl<K: Pod, V: Pod> Table<K, V> for KernelHash<K, V> {
    fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        match self.map.get(key, 0) {
            Ok(value) => Ok(Some(value)),
            Err(error) if is_missing(&error) => Ok(None),
            Err(error) => Err(kernel_error(self.name, "lookup")(error)),
        }
    }

    fn put(&mut self, key: &K, value: &V) -> Result<(), MapError> {
        self.map
            .insert(key, value, 0)
            .map_err(kernel_error(self.name, "update"))
    }

    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        match self.map.remove(key) {
            Err(error) if !is_missing(&error) => Err(kernel_error(self.name, "delete")(error)),
            _ => Ok(()),
        }
    }

    fn keys(&self) -> Result<Vec<K>, MapError> {
        self.map
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(kernel_error(self.name, "iterate"))
    }
}

pub struct KernelLpm<K, V> {
    pub map: LpmTrie<MapData, K, V>,
    pub name: &'static str,
}

impl<K: Pod, V: Pod> Table<Lpm<K>, V> for KernelLpm<K, V> {
    fn get(&self, key: &Lpm<K>) -> Result<Option<V>, MapError> {
        // An exact-entry read, not a longest-prefix lookup: the agent asks about its own keys.
        for existing in self.keys()? {
            if existing.prefix_len == key.prefix_len
                && bytes_of(&existing.data) == bytes_of(&key.data)
            {
                return match self.map.get(&Key::new(key.prefix_len, key.data), 0) {
                    Ok(value) => Ok(Some(value)),
                    Err(error) if is_missing(&error) => Ok(None),
                    Err(error) => Err(kernel_error(self.name, "lookup")(error)),
                };
            }
        }
        Ok(None)
    }

    fn put(&mut self, key: &Lpm<K>, value: &V) -> Result<(), MapError> {
        self.map
            .insert(&Key::new(key.prefix_len, key.data), value, 0)
            .map_err(kernel_error(self.name, "update"))
    }

    fn delete(&mut self, key: &Lpm<K>) -> Result<(), MapError> {
        match self.map.remove(&Key::new(key.prefix_len, key.data)) {
            Err(error) if !is_missing(&error) => Err(kernel_error(self.name, "delete")(error)),
            _ => Ok(()),
        }
    }

    fn keys(&self) -> Result<Vec<Lpm<K>>, MapError> {
        self.map
            .keys()
            .map(|key| {
                key.map(|key| Lpm {
                    prefix_len: key.prefix_len(),
                    data: key.data(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(kernel_error(self.name, "iterate"))
    }
}

fn bytes_of<K: Pod>(value: &K) -> &[u8] {
    // SAFETY: Pod types are plain bytes with no padding left implicit.
    unsafe {
        std::slice::from_raw_parts((value as *const K).cast::<u8>(), std::mem::size_of::<K>())
    }
}

/// The policy maps of a loaded (or reopened) datapath.
pub struct KernelMaps {
    pub active: Array<MapData, u64>,
    pub ifaces: KernelHash<IfaceKey, IfaceConfig>,
    pub cidrs: KernelLpm<CidrKey, RuleBitmap>,
    pub ports: KernelLpm<PortKey, RuleBitmap>,
    pub group_bits: KernelHash<GroupBitsKey, RuleBitmap>,
    pub members: KernelHash<AddrKey, MemberValue>,
    pub local_addrs: KernelHash<LocalAddrKey, u32>,
    pub acl_cidrs: KernelLpm<CidrKey, AclBits>,
    pub acl_ports: KernelLpm<PortKey, AclBits>,
    pub prefix_lists: KernelLpm<AddrKey, MemberValue>,
    pub prefix_list_bits: KernelHash<GroupBitsKey, RuleBitmap>,
}

impl PolicyMaps for KernelMaps {
    fn generation(&self) -> Result<u64, MapError> {
        self.active
            .get(&0, 0)
            .map_err(kernel_error(map_names::ACTIVE, "lookup"))
    }

    fn set_generation(&mut self, generation: u64) -> Result<(), MapError> {
        self.active
            .set(0, generation, 0)
            .map_err(kernel_error(map_names::ACTIVE, "update"))
    }

    fn ifaces(&mut self) -> &mut dyn Table<IfaceKey, IfaceConfig> {
        &mut self.ifaces
    }
    fn cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, RuleBitmap> {
        &mut self.cidrs
    }
    fn ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, RuleBitmap> {
        &mut self.ports
    }
    fn group_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        &mut self.group_bits
    }
    fn members(&mut self) -> &mut dyn Table<AddrKey, MemberValue> {
        &mut self.members
    }
    fn local_addrs(&mut self) -> &mut dyn Table<LocalAddrKey, u32> {
        &mut self.local_addrs
    }
    fn acl_cidrs(&mut self) -> &mut dyn Table<Lpm<CidrKey>, AclBits> {
        &mut self.acl_cidrs
    }
    fn acl_ports(&mut self) -> &mut dyn Table<Lpm<PortKey>, AclBits> {
        &mut self.acl_ports
    }
    fn prefix_lists(&mut self) -> &mut dyn Table<Lpm<AddrKey>, MemberValue> {
        &mut self.prefix_lists
    }
    fn prefix_list_bits(&mut self) -> &mut dyn Table<GroupBitsKey, RuleBitmap> {
        &mut self.prefix_list_bits
    }
}
