//! GlusterFS formats and cluster I/O: changelog records, HTIME history,
//! xattr layouts, the newfile blob, GFIDs, name escaping, volume info.
//! This room knows nothing of gsyncd's roles.

pub mod auxmount;
pub mod backend;
pub mod changelog;
pub mod cli;
pub mod escape;
pub mod fop;
pub mod htime;
pub mod mount;
pub mod newfile;
pub mod uuid;
pub mod volinfo;
pub mod xattr;

pub use uuid::{Gfid, Uuid};
