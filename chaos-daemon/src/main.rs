fn main() {
    let mut k = chaos_daemon::ebpf::Kernel::load().unwrap();
    let cg = std::fs::File::open("/sys/fs/cgroup/unified/chaos-smoke").unwrap();
    let mut atts = vec![];
    for slot in 0..16 {
        for h in chaos_daemon::ebpf::Hook::ALL {
            match k.attach(slot, h, &cg) {
                Ok(a) => atts.push(a),
                Err(e) => { eprintln!("{slot} {h:?}: {e} {:?}", std::error::Error::source(&e)); }
            }
        }
    }
    println!("attached {}", atts.len());
    for h in chaos_daemon::ebpf::Hook::ALL { println!("{h:?} {:?}", chaos_daemon::ebpf::query::attached_programs(&cg, h.attach_type()).map(|v| v.len())); }
    drop(atts);
    for h in chaos_daemon::ebpf::Hook::ALL { print!("{:?} ", chaos_daemon::ebpf::query::attached_programs(&cg, h.attach_type()).map(|v| v.len())); }
}
