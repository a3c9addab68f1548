//! What a component is before it runs: its digest, the world it targets, what it imports and
//! exports, whether rotor grants everything it imports, and whether the types fit (see
//! [`crate::fit`]).

use std::fmt;

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The worlds of `wit/rotor.wit` that rotor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `rotor:kek/rotator`: rotation, validation, seal and open (`rotor rotate` and the rest).
    Rotator,
    /// `rotor:kek/auditor`: read-only checks (`rotor audit`).
    Auditor,
}

/// The version of `wit/rotor.wit`'s package, as every one of its names ends.
const VERSION_SUFFIX: &str = "@0.3.0";

impl World {
    /// The world's full WIT name, e.g. `rotor:kek/rotator@0.3.0`.
    pub fn name(self) -> &'static str {
        match self {
            World::Rotator => "rotor:kek/rotator@0.3.0",
            World::Auditor => "rotor:kek/auditor@0.3.0",
        }
    }

    /// The export that marks a component as targeting this world.
    fn marker_export(self) -> &'static str {
        match self {
            World::Rotator => "rotor:kek/operations@0.3.0",
            World::Auditor => "rotor:kek/audit@0.3.0",
        }
    }

    /// rotor's own interfaces the world imports (type-only interfaces included).
    fn rotor_imports(self) -> &'static [&'static str] {
        match self {
            World::Rotator => &[
                "keys",
                "key-types",
                "wallet-store",
                "wallet-types",
                "journal",
                "journal-types",
                "report",
                "types",
            ],
            World::Auditor => &[
                "key-reader",
                "key-types",
                "wallet-reader",
                "wallet-types",
                "journal-reader",
                "journal-types",
                "report",
                "types",
            ],
        }
    }

    /// Whether a component of this world may import `name`: the world's own interfaces, and
    /// the WASI interfaces a Rust component's standard library imports — randomness, and
    /// streams and `wasi:cli` behind which the host puts nothing (no environment, arguments or
    /// stdio). Clocks, files, sockets, HTTP and anything else are refused.
    pub fn grants_import(self, name: &str) -> bool {
        if let Some(interface) =
            name.strip_prefix("rotor:kek/").and_then(|rest| rest.strip_suffix(VERSION_SUFFIX))
        {
            return self.rotor_imports().contains(&interface);
        }
        const WASI: [&str; 3] = ["wasi:io/", "wasi:random/", "wasi:cli/"];
        WASI.iter().any(|prefix| name.starts_with(prefix))
    }
}

/// What `rotor component inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// Hex sha256 of the component file.
    pub sha256: String,
    /// Size of the component file, in bytes.
    pub bytes: usize,
    /// The world the component's exports say it targets, if any of rotor's.
    pub world: Option<World>,
    /// Every import's name, as the component declares it.
    pub imports: Vec<String>,
    /// Every export's name, as the component declares it.
    pub exports: Vec<String>,
    /// Imports outside the granted world: a component with any is refused.
    pub refused_imports: Vec<String>,
    /// Imports and exports whose names fit the world but whose types do not: a component with
    /// any is refused. Filled in by [`crate::fit`] once the world is known.
    pub misfits: Vec<Misfit>,
}

/// Which side of a component a [`Misfit`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// Something the component imports: the host provides it.
    Import,
    /// Something the component exports: the host calls it.
    Export,
}

/// One import or export whose type is not the world's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Misfit {
    /// Whether the component imports or exports it.
    pub side: Side,
    /// The interface, e.g. `rotor:kek/wallet-store@0.3.0`; `None` when wasmtime's refusal does
    /// not come down to one of rotor's functions (then `reason` is wasmtime's whole message).
    pub interface: Option<String>,
    /// The function of `interface`, when the misfit is one function's.
    pub function: Option<String>,
    /// The function's type as the component declares it (`None` if it lacks the function).
    pub declared: Option<String>,
    /// The function's type in rotor's world, when known.
    pub expected: Option<String>,
    /// What does not fit, in wasmtime's words where they come from wasmtime.
    pub reason: String,
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::Import => "import",
            Side::Export => "export",
        };
        write!(f, "{side}")?;
        if let Some(interface) = &self.interface {
            write!(f, " {interface}")?;
        }
        if let Some(function) = &self.function {
            write!(f, " function `{function}`")?;
        }
        write!(f, ": {}", self.reason)?;
        if let Some(expected) = &self.expected {
            write!(f, "; rotor's world has {expected}")?;
        }
        if let Some(declared) = &self.declared {
            write!(f, "; the component declares {declared}")?;
        }
        Ok(())
    }
}

impl Inspection {
    /// Inspects a compiled component; `sha256` and `bytes` describe the file it came from.
    pub fn of(engine: &Engine, component: &Component, sha256: &str, bytes: usize) -> Inspection {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_owned()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
        let world = [World::Rotator, World::Auditor]
            .into_iter()
            .find(|world| exports.iter().any(|export| export == world.marker_export()));
        let refused_imports = match world {
            Some(world) => imports.iter().filter(|name| !world.grants_import(name)).cloned().collect(),
            None => Vec::new(),
        };
        Inspection {
            sha256: sha256.to_owned(),
            bytes,
            world,
            imports,
            exports,
            refused_imports,
            misfits: Vec::new(),
        }
    }

    /// The version of rotor's contract the component was built against, if it exports one of
    /// rotor's worlds at another version than this host's.
    fn other_version(&self) -> Option<&str> {
        self.exports.iter().find_map(|export| {
            ["rotor:kek/operations@", "rotor:kek/audit@"].iter().find_map(|name| export.strip_prefix(name))
        })
    }

    /// `Ok` if the component targets `expected`, imports nothing the world does not grant, and
    /// every import and export has the world's type.
    pub fn require(&self, origin: &str, expected: World) -> anyhow::Result<()> {
        match self.world {
            Some(world) if world == expected => {}
            Some(world) => anyhow::bail!(
                "component {origin} targets {}, but this command runs {} components",
                world.name(),
                expected.name()
            ),
            None => match self.other_version() {
                Some(version) => anyhow::bail!(
                    "component {origin} was built against rotor:kek@{version}, and this rotor runs \
                     rotor:kek{VERSION_SUFFIX}, whose types differ: rebuild it against this rotor's \
                     wit/rotor.wit"
                ),
                None => anyhow::bail!(
                    "component {origin} exports neither rotor:kek/operations nor rotor:kek/audit: it was \
                     not built against rotor's WIT (wit/rotor.wit); it exports: {}",
                    if self.exports.is_empty() { "nothing".into() } else { self.exports.join(", ") }
                ),
            },
        }
        anyhow::ensure!(
            self.refused_imports.is_empty(),
            "component {origin} imports {}, which the {} world does not grant: refused",
            self.refused_imports.join(", "),
            expected.name()
        );
        // The first few are enough to see what is wrong; `inspect` lists every one.
        const SHOWN: usize = 3;
        if !self.misfits.is_empty() {
            let mut listed: Vec<String> = self.misfits.iter().take(SHOWN).map(Misfit::to_string).collect();
            if self.misfits.len() > SHOWN {
                listed.push(format!(
                    "{} more (`rotor component inspect {origin}` lists them all)",
                    self.misfits.len() - SHOWN
                ));
            }
            anyhow::bail!(
                "component {origin} does not fit the {} world of wit/rotor.wit: {}",
                expected.name(),
                listed.join("; and ")
            );
        }
        Ok(())
    }

    /// The lines `rotor component inspect` prints without `--json`.
    pub fn human(&self) -> String {
        let mut lines = vec![
            format!("sha256   {}", self.sha256),
            format!("size     {} bytes", self.bytes),
            format!("world    {}", self.world.map_or("none of rotor's", World::name)),
        ];
        lines.push("imports".into());
        for import in &self.imports {
            let refused = self.refused_imports.contains(import);
            lines.push(format!("  {}{import}", if refused { "REFUSED " } else { "" }));
        }
        lines.push("exports".into());
        lines.extend(self.exports.iter().map(|export| format!("  {export}")));
        if !self.refused_imports.is_empty() {
            lines.push(format!(
                "refused: imports outside the granted world: {}",
                self.refused_imports.join(", ")
            ));
        }
        if !self.misfits.is_empty() {
            lines.push("refused: types that do not fit the world".into());
            lines.extend(self.misfits.iter().map(|misfit| format!("  {misfit}")));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::{Inspection, World};

    #[test]
    fn a_component_of_another_contract_version_is_told_to_rebuild() {
        let inspected = |exports: &[&str]| Inspection {
            sha256: String::new(),
            bytes: 0,
            world: None,
            imports: Vec::new(),
            exports: exports.iter().map(|e| (*e).to_owned()).collect(),
            refused_imports: Vec::new(),
            misfits: Vec::new(),
        };
        let old = inspected(&["rotor:kek/operations@0.2.0"]).require("old.wasm", World::Rotator);
        let said = old.unwrap_err().to_string();
        assert!(
            said.contains("built against rotor:kek@0.2.0, and this rotor runs rotor:kek@0.3.0")
                && said.contains("rebuild it"),
            "{said}"
        );
        let foreign = inspected(&["wasi:cli/run@0.2.6"]).require("other.wasm", World::Auditor);
        let said = foreign.unwrap_err().to_string();
        assert!(
            said.contains("not built against rotor's WIT") && said.contains("wasi:cli/run@0.2.6"),
            "{said}"
        );
    }

    #[test]
    fn the_auditor_world_grants_no_write_interface() {
        assert!(World::Auditor.grants_import("rotor:kek/key-reader@0.3.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/keys@0.3.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/wallet-store@0.3.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/journal@0.3.0"));
        assert!(World::Rotator.grants_import("rotor:kek/keys@0.3.0"));
        assert!(World::Rotator.grants_import("wasi:random/random@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:sockets/tcp@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:filesystem/preopens@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:clocks/wall-clock@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:http/outgoing-handler@0.2.6"));
        assert!(!World::Rotator.grants_import("rotor:kek/keys@0.1.0"));
        // The old contract handed out key bytes: a component built for it is not linked.
        assert!(!World::Rotator.grants_import("rotor:kek/kv@0.1.0"));
    }
}
