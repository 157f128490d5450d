//! `gluster --xml volume info [VOLUME]`: the topology gsyncd plans workers
//! from. Errors name the element that is missing or wrong.

use super::uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolInfoError {
    #[error("volume info is not XML: {0}")]
    Xml(String),
    #[error("gluster failed (opRet {ret}, opErrno {errno}): {message}")]
    Cli { ret: i64, errno: i64, message: String },
    #[error("volume info: missing element <{0}>")]
    Missing(String),
    #[error("volume info: <{element}> has invalid value {value:?}")]
    Invalid { element: String, value: String },
    #[error("volume info: no volume named {0:?}")]
    NoSuchVolume(String),
}

/// One brick, in volume order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brick {
    pub host: String,
    pub path: Vec<u8>,
    /// glusterd UUID of the node that serves it.
    pub host_uuid: Uuid,
    pub is_arbiter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub id: Uuid,
    /// `Started`, `Stopped`, `Created`.
    pub status: String,
    /// `Distribute`, `Replicate`, `Distributed-Replicate`, `Disperse`, ...
    pub type_name: String,
    pub brick_count: u32,
    /// Bricks per distribute subvolume (the replica or disperse set size).
    pub dist_leaf_count: u32,
    pub replica_count: u32,
    pub arbiter_count: u32,
    pub disperse_count: u32,
    pub redundancy_count: u32,
    pub bricks: Vec<Brick>,
    pub options: Vec<(String, String)>,
}

impl Volume {
    /// Number of distribute subvolumes (the reference's
    /// `primary-distribution-count`).
    pub fn distribution_count(&self) -> u32 {
        self.brick_count.checked_div(self.dist_leaf_count).unwrap_or(self.brick_count)
    }

    /// The index of the replica/disperse set a brick belongs to.
    pub fn subvolume_of(&self, brick_index: usize) -> usize {
        brick_index / (self.dist_leaf_count.max(1) as usize)
    }

    pub fn is_started(&self) -> bool {
        self.status == "Started"
    }

    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether a boolean volume option is on, in any of the spellings
    /// glusterd takes (an option never set is off).
    pub fn option_on(&self, name: &str) -> bool {
        self.option(name)
            .is_some_and(|v| ["on", "true", "yes", "enable", "1"].contains(&v.to_ascii_lowercase().as_str()))
    }
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text(n: roxmltree::Node<'_, '_>, name: &str) -> Result<String, VolInfoError> {
    child(n, name)
        .map(|c| c.text().unwrap_or("").trim().to_owned())
        .ok_or_else(|| VolInfoError::Missing(name.to_owned()))
}

fn number<T: std::str::FromStr>(n: roxmltree::Node<'_, '_>, name: &str) -> Result<T, VolInfoError> {
    let t = text(n, name)?;
    t.parse().map_err(|_| VolInfoError::Invalid { element: name.to_owned(), value: t })
}

fn uuid(n: roxmltree::Node<'_, '_>, name: &str) -> Result<Uuid, VolInfoError> {
    let t = text(n, name)?;
    Uuid::parse_str(&t).map_err(|_| VolInfoError::Invalid { element: name.to_owned(), value: t })
}

fn brick(n: roxmltree::Node<'_, '_>) -> Result<Brick, VolInfoError> {
    let full = match child(n, "name") {
        Some(c) => c.text().unwrap_or("").trim().to_owned(),
        None => n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>().trim().to_owned(),
    };
    let (host, path) = full
        .split_once(":/")
        .map(|(h, p)| (h.to_owned(), format!("/{p}")))
        .ok_or_else(|| VolInfoError::Invalid { element: "brick".into(), value: full.clone() })?;
    Ok(Brick {
        host,
        path: path.into_bytes(),
        host_uuid: uuid(n, "hostUuid")?,
        is_arbiter: child(n, "isArbiter").and_then(|c| c.text()).is_some_and(|t| t.trim() == "1"),
    })
}

fn volume(v: roxmltree::Node<'_, '_>) -> Result<Volume, VolInfoError> {
    let bricks = child(v, "bricks")
        .ok_or_else(|| VolInfoError::Missing("bricks".into()))?
        .children()
        .filter(|c| c.has_tag_name("brick"))
        .map(brick)
        .collect::<Result<Vec<_>, _>>()?;
    let options = child(v, "options")
        .map(|o| {
            o.children()
                .filter(|c| c.has_tag_name("option"))
                .map(|c| Ok((text(c, "name")?, text(c, "value")?)))
                .collect::<Result<Vec<_>, VolInfoError>>()
        })
        .transpose()?
        .unwrap_or_default();
    let vol = Volume {
        name: text(v, "name")?,
        id: uuid(v, "id")?,
        status: text(v, "statusStr")?,
        type_name: text(v, "typeStr")?,
        brick_count: number(v, "brickCount")?,
        dist_leaf_count: number(v, "distCount")?,
        replica_count: number(v, "replicaCount")?,
        arbiter_count: child(v, "arbiterCount").map_or(Ok(0), |_| number(v, "arbiterCount"))?,
        disperse_count: number(v, "disperseCount")?,
        redundancy_count: number(v, "redundancyCount")?,
        bricks,
        options,
    };
    if vol.bricks.len() != vol.brick_count as usize {
        return Err(VolInfoError::Invalid {
            element: "brickCount".into(),
            value: format!("{} (but {} <brick> elements)", vol.brick_count, vol.bricks.len()),
        });
    }
    Ok(vol)
}

/// The `<cliOutput>` envelope: glusterd's own error, if it reports one.
fn check_ret(root: roxmltree::Node<'_, '_>) -> Result<(), VolInfoError> {
    if !root.has_tag_name("cliOutput") {
        return Err(VolInfoError::Missing("cliOutput".into()));
    }
    let ret: i64 = number(root, "opRet")?;
    if ret != 0 {
        return Err(VolInfoError::Cli {
            ret,
            errno: number(root, "opErrno").unwrap_or(0),
            message: text(root, "opErrstr").unwrap_or_default(),
        });
    }
    Ok(())
}

/// Parses the whole output of `gluster --xml volume info`.
pub fn parse(xml: &str) -> Result<Vec<Volume>, VolInfoError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| VolInfoError::Xml(e.to_string()))?;
    let root = doc.root_element();
    check_ret(root)?;
    let vols = child(root, "volInfo").ok_or_else(|| VolInfoError::Missing("volInfo".into()))?;
    let vols = child(vols, "volumes").ok_or_else(|| VolInfoError::Missing("volumes".into()))?;
    vols.children().filter(|c| c.has_tag_name("volume")).map(volume).collect()
}

/// Parses the output for one named volume.
pub fn parse_one(xml: &str, name: &str) -> Result<Volume, VolInfoError> {
    parse(xml)?.into_iter().find(|v| v.name == name).ok_or_else(|| VolInfoError::NoSuchVolume(name.to_owned()))
}

/// A brick's state in `gluster --xml volume status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrickStatus {
    pub host_uuid: Uuid,
    pub path: Vec<u8>,
    pub online: bool,
}

/// Parses `gluster --xml volume status <vol>`: its bricks (the daemons it
/// also lists, such as the self-heal daemon, are left out).
pub fn parse_status(xml: &str) -> Result<Vec<BrickStatus>, VolInfoError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| VolInfoError::Xml(e.to_string()))?;
    check_ret(doc.root_element())?;
    let mut out = Vec::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("node")) {
        let path = text(node, "path").unwrap_or_default();
        if !path.starts_with('/') {
            continue;
        }
        let Ok(host_uuid) = uuid(node, "peerid") else { continue };
        let online = text(node, "status").is_ok_and(|s| s == "1");
        out.push(BrickStatus { host_uuid, path: path.into_bytes(), online });
    }
    Ok(out)
}

impl Volume {
    /// Whether brick `index` is the one that syncs its replica set: the
    /// first brick of the set, in volume order, that `status` shows online.
    /// Unlike the reference's node-uuid rule this is per brick, so two
    /// bricks of one set on one node are not both Active.
    pub fn is_active(&self, index: usize, status: &[BrickStatus]) -> bool {
        let set = self.subvolume_of(index);
        self.bricks
            .iter()
            .enumerate()
            .find(|(j, _)| self.subvolume_of(*j) == set && self.is_online(*j, status))
            .is_some_and(|(j, _)| j == index)
    }

    /// Whether `status` shows brick `index` online.
    pub fn is_online(&self, index: usize, status: &[BrickStatus]) -> bool {
        self.bricks
            .get(index)
            .is_some_and(|b| status.iter().any(|s| s.online && s.host_uuid == b.host_uuid && s.path == b.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_the_active_brick_of_each_set() {
        let xml = r#"<cliOutput><opRet>0</opRet><opErrno>0</opErrno><opErrstr/><volStatus><volumes><volume>
          <volName>gv0</volName>
          <node><hostname>n1</hostname><path>/b/0</path><peerid>f052226e-600d-478c-9040-d93b1d9aaf8c</peerid><status>0</status></node>
          <node><hostname>n2</hostname><path>/b/1</path><peerid>a052226e-600d-478c-9040-d93b1d9aaf8c</peerid><status>1</status></node>
          <node><hostname>Self-heal Daemon</hostname><path>localhost</path><peerid>f052226e-600d-478c-9040-d93b1d9aaf8c</peerid><status>1</status></node>
          </volume></volumes></volStatus></cliOutput>"#;
        let st = parse_status(xml).unwrap();
        assert_eq!(st.len(), 2);
        assert!(!st[0].online && st[1].online);
        let v = parse_one(SAMPLE, "gv0").unwrap();
        // Set 0 is bricks 0 and 1: brick 0 is down, so brick 1 is Active.
        assert!(!v.is_active(0, &st));
        assert!(v.is_active(1, &st));
        let all: Vec<BrickStatus> = st.iter().map(|b| BrickStatus { online: true, ..b.clone() }).collect();
        assert!(v.is_active(0, &all) && !v.is_active(1, &all));
    }

    /// Shaped like glusterd 10.3's output for a 2 x 2 volume.
    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cliOutput>
  <opRet>0</opRet>
  <opErrno>0</opErrno>
  <opErrstr/>
  <volInfo>
    <volumes>
      <volume>
        <name>gv0</name>
        <id>5f0b7a9e-6a7e-4a57-8f3c-6c2f2c3b9a11</id>
        <status>1</status>
        <statusStr>Started</statusStr>
        <snapshotCount>0</snapshotCount>
        <brickCount>4</brickCount>
        <distCount>2</distCount>
        <replicaCount>2</replicaCount>
        <arbiterCount>0</arbiterCount>
        <disperseCount>0</disperseCount>
        <redundancyCount>0</redundancyCount>
        <type>7</type>
        <typeStr>Distributed-Replicate</typeStr>
        <transport>0</transport>
        <bricks>
          <brick uuid="f052226e-600d-478c-9040-d93b1d9aaf8c">n1:/b/0<name>n1:/b/0</name><hostUuid>f052226e-600d-478c-9040-d93b1d9aaf8c</hostUuid><isArbiter>0</isArbiter></brick>
          <brick uuid="a052226e-600d-478c-9040-d93b1d9aaf8c">n2:/b/1<name>n2:/b/1</name><hostUuid>a052226e-600d-478c-9040-d93b1d9aaf8c</hostUuid><isArbiter>0</isArbiter></brick>
          <brick uuid="f052226e-600d-478c-9040-d93b1d9aaf8c">n1:/b/2 x<name>n1:/b/2 x</name><hostUuid>f052226e-600d-478c-9040-d93b1d9aaf8c</hostUuid><isArbiter>0</isArbiter></brick>
          <brick uuid="a052226e-600d-478c-9040-d93b1d9aaf8c">n2:/b/3<name>n2:/b/3</name><hostUuid>a052226e-600d-478c-9040-d93b1d9aaf8c</hostUuid><isArbiter>0</isArbiter></brick>
        </bricks>
        <optCount>2</optCount>
        <options>
          <option><name>changelog.changelog</name><value>on</value></option>
          <option><name>geo-replication.indexing</name><value>on</value></option>
        </options>
      </volume>
      <count>1</count>
    </volumes>
  </volInfo>
</cliOutput>"#;

    #[test]
    fn parses_topology() {
        let v = parse_one(SAMPLE, "gv0").unwrap();
        assert_eq!(v.id.to_string(), "5f0b7a9e-6a7e-4a57-8f3c-6c2f2c3b9a11");
        assert_eq!(v.bricks.len(), 4);
        assert_eq!(v.bricks[2].host, "n1");
        assert_eq!(v.bricks[2].path, b"/b/2 x");
        assert_eq!(v.distribution_count(), 2);
        assert_eq!(v.subvolume_of(3), 1);
        assert_eq!(v.option("changelog.changelog"), Some("on"));
        assert!(v.is_started());
        assert_eq!(parse_one(SAMPLE, "nope"), Err(VolInfoError::NoSuchVolume("nope".into())));
    }

    #[test]
    fn errors_name_the_element() {
        let e = parse(&SAMPLE.replace("<brickCount>4</brickCount>", "")).unwrap_err();
        assert_eq!(e, VolInfoError::Missing("brickCount".into()));
        let e = parse(&SAMPLE.replace("<replicaCount>2<", "<replicaCount>x<")).unwrap_err();
        assert!(matches!(e, VolInfoError::Invalid { ref element, .. } if element == "replicaCount"), "{e}");
        let e = parse(&SAMPLE.replace("<brickCount>4<", "<brickCount>5<")).unwrap_err();
        assert!(e.to_string().contains("4 <brick> elements"), "{e}");
        let failed = "<cliOutput><opRet>-1</opRet><opErrno>30800</opErrno><opErrstr>Volume x does not exist</opErrstr></cliOutput>";
        assert!(parse(failed).unwrap_err().to_string().contains("does not exist"));
        assert!(matches!(parse("<not xml"), Err(VolInfoError::Xml(_))));
    }
}
