//! The built eBPF object, parsed without a kernel: every hook (and the tc delay program) exists
//! once per slot with the right attach type, the global LSM programs exist once, the maps have
//! the ABI's shapes, and the fault cap's atomic really fetches.

use aya_obj::{Object, ProgramSection, generated::bpf_attach_type};
use chaos_common::{
    MAP_COUNTERS, MAP_FAULT_TICKETS, MAP_LSM_CGROUPS, MAP_NOTES, MAP_SLOTS, MAP_TC,
    MAP_TC_LINK_FREE, MAX_LSM_CGROUPS, MAX_NOTES, MAX_SLOTS, MAX_TC_LINKS, SlotConfig,
    SlotCounters, TcConfig,
};
use chaos_daemon::ebpf::{Hook, OBJECT, lsm::LsmHook, tc::TcProgram};

/// Programs per slot: the cgroup hooks and the tc egress programs (delay, silent loss).
const PER_SLOT: usize = Hook::ALL.len() + TcProgram::ALL.len();

fn object() -> Object {
    Object::parse(OBJECT).expect("the embedded object parses")
}

fn attach_type(section: &ProgramSection) -> Option<u32> {
    let t: bpf_attach_type = match section {
        ProgramSection::CgroupSkb {
            attach_type: Some(t),
        } => (*t).into(),
        ProgramSection::CgroupSockAddr { attach_type } => (*attach_type).into(),
        ProgramSection::CgroupSock { attach_type } => (*attach_type).into(),
        _ => return None,
    };
    Some(t as u32)
}

#[test]
fn every_hook_exists_for_every_slot_with_its_attach_type() {
    let obj = object();
    for slot in 0..MAX_SLOTS {
        for hook in Hook::ALL {
            let name = hook.program_name(slot);
            assert!(
                name.len() <= 15,
                "{name} exceeds the kernel's program name length"
            );
            let prog = obj
                .programs
                .get(&name)
                .unwrap_or_else(|| panic!("missing program {name}"));
            assert_eq!(
                attach_type(&prog.section),
                Some(hook.attach_type()),
                "{name}"
            );
        }
        for program in TcProgram::ALL {
            let name = program.name(slot);
            assert!(name.len() <= 15, "{name}");
            let prog = obj
                .programs
                .get(&name)
                .unwrap_or_else(|| panic!("missing program {name}"));
            assert!(
                matches!(prog.section, ProgramSection::SchedClassifier),
                "{name}: {:?}",
                prog.section
            );
        }
    }
    let lsm = lsm_programs();
    for name in &lsm {
        assert!(name.len() <= 15, "{name} exceeds the program name length");
        let prog = obj
            .programs
            .get(*name)
            .unwrap_or_else(|| panic!("missing LSM program {name}"));
        assert!(
            matches!(prog.section, ProgramSection::Lsm { sleepable: false }),
            "{name} is a non-sleepable LSM program"
        );
    }
    assert_eq!(
        obj.programs.len(),
        MAX_SLOTS as usize * PER_SLOT + lsm.len(),
        "no stray programs"
    );
    assert!(
        obj.license.to_str().unwrap().contains("GPL"),
        "GPL-only helpers need a GPL license"
    );
}

/// The global LSM programs: one per hook, plus the `fmod_ret` bodies that differ.
fn lsm_programs() -> Vec<&'static str> {
    let mut names: Vec<&str> = LsmHook::ALL
        .iter()
        .flat_map(|h| [h.program_name(), h.fmod_ret_target().1])
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

#[test]
fn maps_match_the_shared_abi() {
    let obj = object();
    let shape = |name: &str| {
        let m = obj
            .maps
            .get(name)
            .unwrap_or_else(|| panic!("missing map {name}"));
        (m.map_type(), m.key_size(), m.value_size(), m.max_entries())
    };
    use aya_obj::generated::bpf_map_type::{
        BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_CGROUP_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY,
    };
    let slot = size_of::<SlotConfig>() as u32;
    let counters = size_of::<SlotCounters>() as u32;
    assert_eq!(
        shape(MAP_SLOTS),
        (BPF_MAP_TYPE_ARRAY as u32, 4, slot, MAX_SLOTS)
    );
    assert_eq!(
        shape(MAP_FAULT_TICKETS),
        (BPF_MAP_TYPE_ARRAY as u32, 4, 8, MAX_SLOTS)
    );
    assert_eq!(
        shape(MAP_COUNTERS),
        (BPF_MAP_TYPE_PERCPU_ARRAY as u32, 4, counters, MAX_SLOTS)
    );
    assert_eq!(
        shape(MAP_LSM_CGROUPS),
        (BPF_MAP_TYPE_CGROUP_ARRAY as u32, 4, 4, MAX_LSM_CGROUPS)
    );
    // One rate limiter per slot and target.
    assert_eq!(
        shape(MAP_TC_LINK_FREE),
        (BPF_MAP_TYPE_ARRAY as u32, 4, 8, MAX_TC_LINKS)
    );
    let latency = size_of::<TcConfig>() as u32;
    assert_eq!(
        shape(MAP_TC),
        (BPF_MAP_TYPE_ARRAY as u32, 4, latency, MAX_SLOTS)
    );
    assert_eq!(
        shape(MAP_NOTES),
        (BPF_MAP_TYPE_ARRAY as u32, 4, 8, MAX_NOTES)
    );
}

#[test]
fn fault_cap_atomics_return_the_old_value() {
    // BPF_STX | BPF_DW | BPF_ATOMIC; imm BPF_ADD | BPF_FETCH. A non-fetching `lock add` here
    // would make the cap check compare against the addend (an LLVM lowering we hit once).
    const ATOMIC_DW: u8 = 0xdb;
    const ADD_FETCH: i32 = 0x01;
    let obj = object();
    let lsm = lsm_programs();
    let (mut cgroup_atomics, mut lsm_atomics) = (0, 0);
    for (name, prog) in &obj.programs {
        let f = &obj.functions[&prog.function_key()];
        for insn in f.instructions.iter().filter(|i| i.code == ATOMIC_DW) {
            assert_eq!(insn.imm, ADD_FETCH, "{name}: atomic without BPF_FETCH");
            if lsm.contains(&name.as_str()) {
                lsm_atomics += 1;
            } else {
                cgroup_atomics += 1;
            }
        }
    }
    assert_eq!(
        cgroup_atomics,
        MAX_SLOTS as usize * PER_SLOT,
        "one ticket per program"
    );
    assert!(
        lsm_atomics >= lsm.len(),
        "every LSM program takes tickets ({lsm_atomics} atomics)"
    );
}
