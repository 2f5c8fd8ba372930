//! The one BTF question aya 0.14 cannot answer publicly: at which byte offset a struct member
//! sits in this kernel (`struct file`'s `f_path` moved between 6.1 and 6.12), for the members
//! the path-prefix walk reads ([`kernel_offsets`]). A minimal reader of the BTF type section
//! (include/uapi/linux/btf.h), enough to walk every type once.

use chaos_common::KernelOffsets;

/// BTF kinds (`BTF_KIND_*`) and the size of the data that follows each `struct btf_type`.
fn trailing_len(kind: u32, vlen: u32) -> Option<usize> {
    let vlen = vlen as usize;
    Some(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: nothing.
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        // ARRAY: struct btf_array.
        3 => 12,
        // STRUCT, UNION, DATASEC: vlen × 12; ENUM, FUNC_PROTO: vlen × 8; ENUM64: vlen × 12.
        4 | 5 | 15 | 19 => 12 * vlen,
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn str_at(strings: &[u8], off: u32) -> Option<&[u8]> {
    let s = strings.get(off as usize..)?;
    Some(&s[..s.iter().position(|&c| c == 0)?])
}

/// The parts of a `struct btf_type` this reader uses.
struct TypeHeader<'a> {
    name: &'a [u8],
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// Where the kind-specific data (members, ...) starts in the type section.
    body: usize,
}

/// The parsed sections of a BTF blob and where each type starts (type id `i + 1`).
struct Types<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    starts: Vec<usize>,
}

impl<'a> Types<'a> {
    fn parse(btf: &'a [u8]) -> Option<Self> {
        if btf.get(..2)? != [0x9f, 0xeb] {
            return None;
        }
        let hdr_len = u32_at(btf, 4)? as usize;
        let (type_off, type_len) = (u32_at(btf, 8)? as usize, u32_at(btf, 12)? as usize);
        let (str_off, str_len) = (u32_at(btf, 16)? as usize, u32_at(btf, 20)? as usize);
        let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len)?;
        let mut starts = Vec::new();
        let mut at = 0;
        while at + 12 <= types.len() {
            starts.push(at);
            let info = u32_at(types, at + 4)?;
            at += 12 + trailing_len((info >> 24) & 0x1f, info & 0xffff)?;
        }
        Some(Self {
            types,
            strings,
            starts,
        })
    }

    /// The header of type `id`.
    fn get(&self, id: u32) -> Option<TypeHeader<'a>> {
        let at = *self.starts.get((id as usize).checked_sub(1)?)?;
        let info = u32_at(self.types, at + 4)?;
        Some(TypeHeader {
            name: str_at(self.strings, u32_at(self.types, at)?)?,
            kind: (info >> 24) & 0x1f,
            vlen: info & 0xffff,
            kind_flag: info >> 31 == 1,
            body: at + 12,
        })
    }

    /// Byte offset of `member` in struct/union `id`, looking into anonymous struct and union
    /// members (6.18's `struct file` keeps `f_path` in an anonymous union).
    fn member_offset(&self, id: u32, member: &[u8], depth: u32) -> Option<u32> {
        let TypeHeader {
            kind,
            vlen,
            kind_flag,
            body,
            ..
        } = self.get(id)?;
        if !matches!(kind, 4 | 5) || depth > 8 {
            return None;
        }
        for m in 0..vlen as usize {
            let m_at = body + 12 * m;
            let name = str_at(self.strings, u32_at(self.types, m_at)?)?;
            let bits = u32_at(self.types, m_at + 8)?;
            // With kind_flag set, the low 24 bits are the offset, the high 8 a bitfield size.
            let bits = if kind_flag { bits & 0xff_ffff } else { bits };
            if bits % 8 != 0 {
                continue;
            }
            if name == member {
                return Some(bits / 8);
            }
            if name.is_empty()
                && let Some(inner) =
                    self.member_offset(u32_at(self.types, m_at + 4)?, member, depth + 1)
            {
                return Some(bits / 8 + inner);
            }
        }
        None
    }
}

impl Types<'_> {
    /// The byte offset of `member` in the struct named `strukt`.
    fn struct_member(&self, strukt: &str, member: &str) -> Option<u32> {
        (1..=self.starts.len() as u32)
            .find(|&id| {
                self.get(id)
                    .is_some_and(|h| h.kind == 4 && h.name == strukt.as_bytes())
            })
            .and_then(|id| self.member_offset(id, member.as_bytes(), 0))
    }
}

/// The byte offset of `member` in the struct named `strukt`, from raw little-endian BTF such
/// as `/sys/kernel/btf/vmlinux`. `None` when absent or the BTF is malformed.
#[cfg(test)]
fn member_offset(btf: &[u8], strukt: &str, member: &str) -> Option<u32> {
    Types::parse(btf)?.struct_member(strukt, member)
}

/// Every offset of [`KernelOffsets`] from raw BTF, `valid` set; `None` if one is missing.
pub fn kernel_offsets(btf: &[u8]) -> Option<KernelOffsets> {
    let t = Types::parse(btf)?;
    Some(KernelOffsets {
        file_f_path: t.struct_member("file", "f_path")?,
        path_dentry: t.struct_member("path", "dentry")?,
        dentry_d_parent: t.struct_member("dentry", "d_parent")?,
        dentry_d_inode: t.struct_member("dentry", "d_inode")?,
        inode_i_ino: t.struct_member("inode", "i_ino")?,
        inode_i_sb: t.struct_member("inode", "i_sb")?,
        super_block_s_dev: t.struct_member("super_block", "s_dev")?,
        valid: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct file { int a; struct path f_path; }` in it.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0file\0a\0f_path\0path\0".to_vec();
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // [1] int: name "int", kind INT, size 4, encoding.
        push(&[1, 1 << 24, 4, 32]);
        // [2] struct path (empty, size 16).
        push(&[19, 4 << 24, 16]);
        // [3] struct file, 2 members: a @0 bits, f_path @64 bits.
        push(&[5, (4 << 24) | 2, 24, 10, 1, 0, 12, 2, 64]);
        let mut b = vec![0x9f, 0xeb, 1, 0];
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&types);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn finds_the_member_offset_in_bytes() {
        let b = blob();
        assert_eq!(member_offset(&b, "file", "f_path"), Some(8));
        assert_eq!(member_offset(&b, "file", "a"), Some(0));
        assert_eq!(member_offset(&b, "file", "f_mode"), None);
        assert_eq!(member_offset(&b, "inode", "f_path"), None);
        assert_eq!(member_offset(&b[..10], "file", "f_path"), None);
    }

    #[test]
    fn reads_this_kernels_offsets() {
        let Ok(b) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            // The kernel tests' rule: skipping is allowed only where they are not required.
            assert!(
                std::env::var_os("CHAOS_REQUIRE_KERNEL").is_none(),
                "CHAOS_REQUIRE_KERNEL is set but /sys/kernel/btf/vmlinux is unreadable"
            );
            eprintln!("skipped: this kernel exposes no BTF");
            return;
        };
        let off = member_offset(&b, "file", "f_path").expect("struct file has f_path");
        assert!(off > 0 && off < 256, "{off}");
        let o = kernel_offsets(&b).expect("every member the path walk reads");
        assert_eq!(o.file_f_path, off);
        assert_eq!(o.valid, 1);
        // `struct path` is { vfsmount *mnt; dentry *dentry; } on every kernel we know.
        assert_eq!(o.path_dentry, 8);
        for v in [
            o.dentry_d_parent,
            o.dentry_d_inode,
            o.inode_i_ino,
            o.inode_i_sb,
        ] {
            assert!(v > 0 && v < 512 && v % 8 == 0, "{o:?}");
        }
    }
}
