//! GlusterFS file-operation numbers (`glusterfs_fop_t`) and their names as
//! libgfchangelog prints them (`gf_fop_list`).

use std::fmt;

/// A fop number as recorded in a changelog.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Fop(pub u32);

/// `gf_fop_list`, indexed by fop number (release 10).
const NAMES: &[&str] = &[
    "NULL",
    "STAT",
    "READLINK",
    "MKNOD",
    "MKDIR",
    "UNLINK",
    "RMDIR",
    "SYMLINK",
    "RENAME",
    "LINK",
    "TRUNCATE",
    "OPEN",
    "READ",
    "WRITE",
    "STATFS",
    "FLUSH",
    "FSYNC",
    "SETXATTR",
    "GETXATTR",
    "REMOVEXATTR",
    "OPENDIR",
    "FSYNCDIR",
    "ACCESS",
    "CREATE",
    "FTRUNCATE",
    "FSTAT",
    "LK",
    "LOOKUP",
    "READDIR",
    "INODELK",
    "FINODELK",
    "ENTRYLK",
    "FENTRYLK",
    "XATTROP",
    "FXATTROP",
    "FGETXATTR",
    "FSETXATTR",
    "RCHECKSUM",
    "SETATTR",
    "FSETATTR",
    "READDIRP",
    "FORGET",
    "RELEASE",
    "RELEASEDIR",
    "GETSPEC",
    "FREMOVEXATTR",
    "FALLOCATE",
    "DISCARD",
    "ZEROFILL",
    "IPC",
    "SEEK",
    "LEASE",
    "COMPOUND",
    "GETACTIVELK",
    "SETACTIVELK",
    "PUT",
    "ICREATE",
    "NAMELINK",
    "COPY_FILE_RANGE",
];

impl Fop {
    pub const MKNOD: Fop = Fop(3);
    pub const MKDIR: Fop = Fop(4);
    pub const UNLINK: Fop = Fop(5);
    pub const RMDIR: Fop = Fop(6);
    pub const SYMLINK: Fop = Fop(7);
    pub const RENAME: Fop = Fop(8);
    pub const LINK: Fop = Fop(9);
    pub const TRUNCATE: Fop = Fop(10);
    pub const SETXATTR: Fop = Fop(17);
    pub const REMOVEXATTR: Fop = Fop(19);
    pub const CREATE: Fop = Fop(23);
    pub const XATTROP: Fop = Fop(33);
    pub const FXATTROP: Fop = Fop(34);
    pub const FSETXATTR: Fop = Fop(36);
    pub const SETATTR: Fop = Fop(38);
    pub const FSETATTR: Fop = Fop(39);
    pub const FREMOVEXATTR: Fop = Fop(45);

    /// The name libgfchangelog prints, if the number is known.
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(self.0 as usize).copied()
    }

    /// Looks a fop up by its printed name.
    pub fn from_name(name: &[u8]) -> Option<Fop> {
        NAMES.iter().position(|n| n.as_bytes() == name).and_then(|i| u32::try_from(i).ok()).map(Fop)
    }
}

impl fmt::Display for Fop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "FOP{}", self.0),
        }
    }
}

impl fmt::Debug for Fop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_names() {
        for (f, n) in [
            (Fop::MKNOD, "MKNOD"),
            (Fop::MKDIR, "MKDIR"),
            (Fop::UNLINK, "UNLINK"),
            (Fop::RMDIR, "RMDIR"),
            (Fop::SYMLINK, "SYMLINK"),
            (Fop::RENAME, "RENAME"),
            (Fop::LINK, "LINK"),
            (Fop::TRUNCATE, "TRUNCATE"),
            (Fop::SETXATTR, "SETXATTR"),
            (Fop::REMOVEXATTR, "REMOVEXATTR"),
            (Fop::CREATE, "CREATE"),
            (Fop::XATTROP, "XATTROP"),
            (Fop::FXATTROP, "FXATTROP"),
            (Fop::FSETXATTR, "FSETXATTR"),
            (Fop::SETATTR, "SETATTR"),
            (Fop::FSETATTR, "FSETATTR"),
            (Fop::FREMOVEXATTR, "FREMOVEXATTR"),
        ] {
            assert_eq!(f.name(), Some(n));
            assert_eq!(Fop::from_name(n.as_bytes()), Some(f));
        }
        assert_eq!(Fop(9999).to_string(), "FOP9999");
    }
}
