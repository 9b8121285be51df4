//! Loading the datapath: map sizes, pins, the five programs, and the decide program array.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, MapError as AyaMapError, ProgramArray},
    programs::{ProgramError, SchedClassifier, Xdp},
};
use filter_common::{Settings, map_names, program_names};

use super::{
    kernel_maps::{KernelHash, KernelLpm, KernelMaps},
    object::{self, ObjectError},
};
use crate::{maps::Capacities, pins::Paths};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("loading program {name} (the verifier's output follows): {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: AyaMapError,
    },
    #[error("creating pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pin the maps under this directory (reusing maps already pinned there). `None` for
    /// throwaway loads, as in tests of the object itself.
    pub pin_root: Option<PathBuf>,
    pub capacities: Capacities,
    /// Verifier log detail; `None` keeps aya's default (statistics on failure).
    pub verifier_log: Option<aya::VerifierLogLevel>,
}

/// A loaded datapath: programs verified and loaded, decide array filled, policy maps open.
pub struct Datapath {
    pub ebpf: Ebpf,
    pub maps: KernelMaps,
    /// Held open: the kernel empties a program array once no file descriptor or pin refers to
    /// it, and every packet would then drop at the tail call.
    pub decide_programs: Vec<ProgramArray<MapData>>,
}

/// The verifier gives up with EAGAIN when interrupted (it checks for pending signals between
/// instructions), which happens when several large programs are verified at once. Retrying
/// after a pause is safe.
fn retry_interrupted(
    mut load: impl FnMut() -> Result<(), ProgramError>,
) -> Result<(), ProgramError> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        match load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < ATTEMPTS =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100 * attempt as u64));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn map_error(name: &'static str) -> impl Fn(AyaMapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::Missing(name))
}

fn kernel_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<KernelHash<K, V>, DatapathError> {
    Ok(KernelHash {
        map: HashMap::try_from(take_map(ebpf, name)?).map_err(map_error(name))?,
        name,
    })
}

fn kernel_lpm<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<KernelLpm<K, V>, DatapathError> {
    Ok(KernelLpm {
        map: LpmTrie::try_from(take_map(ebpf, name)?).map_err(map_error(name))?,
        name,
    })
}

impl Datapath {
    pub fn load(options: &LoadOptions) -> Result<Self, DatapathError> {
        let object = object::bytes()?;
        let capacities = &options.capacities;
        let mut loader = EbpfLoader::new();
        if let Some(level) = options.verifier_log {
            loader.verifier_log_level(level);
        }
        let sized: [(&'static str, usize); 12] = [
            (map_names::CIDRS, capacities.cidrs),
            (map_names::PORTS, capacities.ports),
            (map_names::GROUP_BITS, capacities.group_bits),
            (map_names::MEMBERS, capacities.members),
            (map_names::LOCAL_ADDRS, capacities.local_addrs),
            (map_names::ACL_CIDRS, capacities.acl_cidrs),
            (map_names::ACL_PORTS, capacities.acl_ports),
            (map_names::PREFIX_LISTS, capacities.prefix_lists),
            (map_names::PREFIX_LIST_BITS, capacities.prefix_list_bits),
            (map_names::CT_ESTABLISHED, capacities.ct_established),
            (map_names::CT_EMBRYONIC, capacities.ct_embryonic),
            (map_names::FRAGMENTS, capacities.fragments),
        ];
        for (name, size) in sized {
            loader.map_max_entries(name, u32::try_from(size).unwrap_or(u32::MAX));
        }
        if let Some(root) = &options.pin_root {
            let dir = Paths::new(root).maps_dir();
            std::fs::create_dir_all(&dir).map_err(|source| DatapathError::PinDir {
                path: dir.clone(),
                source,
            })?;
            for name in map_names::PINNED {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(object)?;

        for name in [program_names::XDP_INGRESS, program_names::XDP_DECIDE] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing(name))?
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            retry_interrupted(|| program.load())
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        for name in [
            program_names::TC_INGRESS,
            program_names::TC_EGRESS,
            program_names::TC_DECIDE,
        ] {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::Missing(name))?
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            retry_interrupted(|| program.load())
                .map_err(|source| DatapathError::Program { name, source })?;
        }

        let mut decide_programs = Vec::with_capacity(2);
        for (array, name) in [
            (map_names::DECIDE_XDP, program_names::XDP_DECIDE),
            (map_names::DECIDE_TC, program_names::TC_DECIDE),
        ] {
            let mut programs: ProgramArray<MapData> =
                ProgramArray::try_from(take_map(&mut ebpf, array)?).map_err(map_error(array))?;
            let program = ebpf.program(name).ok_or(DatapathError::Missing(name))?;
            let fd = program
                .fd()
                .map_err(|source| DatapathError::Program { name, source })?;
            programs.set(0, fd, 0).map_err(map_error(array))?;
            decide_programs.push(programs);
        }

        let mut settings: Array<MapData, Settings> =
            Array::try_from(take_map(&mut ebpf, map_names::SETTINGS)?)
                .map_err(map_error(map_names::SETTINGS))?;
        let current = settings
            .get(&0, 0)
            .map_err(map_error(map_names::SETTINGS))?;
        if current.fragment_timeout_sec == 0 {
            settings
                .set(0, Settings::DEFAULT, 0)
                .map_err(map_error(map_names::SETTINGS))?;
        }

        let maps = KernelMaps {
            active: Array::try_from(take_map(&mut ebpf, map_names::ACTIVE)?)
                .map_err(map_error(map_names::ACTIVE))?,
            ifaces: kernel_hash(&mut ebpf, map_names::IFACES)?,
            cidrs: kernel_lpm(&mut ebpf, map_names::CIDRS)?,
            ports: kernel_lpm(&mut ebpf, map_names::PORTS)?,
            group_bits: kernel_hash(&mut ebpf, map_names::GROUP_BITS)?,
            members: kernel_hash(&mut ebpf, map_names::MEMBERS)?,
            local_addrs: kernel_hash(&mut ebpf, map_names::LOCAL_ADDRS)?,
            acl_cidrs: kernel_lpm(&mut ebpf, map_names::ACL_CIDRS)?,
            acl_ports: kernel_lpm(&mut ebpf, map_names::ACL_PORTS)?,
            prefix_lists: kernel_lpm(&mut ebpf, map_names::PREFIX_LISTS)?,
            prefix_list_bits: kernel_hash(&mut ebpf, map_names::PREFIX_LIST_BITS)?,
        };
        Ok(Self {
            ebpf,
            maps,
            decide_programs,
        })
    }
}
