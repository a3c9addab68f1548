//! What a component is before it runs: its digest, the world it targets, what it imports and
//! exports, and whether rotor grants everything it imports.

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

impl World {
    /// The world's full WIT name, e.g. `rotor:kek/rotator@0.1.0`.
    pub fn name(self) -> &'static str {
        match self {
            World::Rotator => "rotor:kek/rotator@0.1.0",
            World::Auditor => "rotor:kek/auditor@0.1.0",
        }
    }

    /// The export that marks a component as targeting this world.
    fn marker_export(self) -> &'static str {
        match self {
            World::Rotator => "rotor:kek/operations@0.1.0",
            World::Auditor => "rotor:kek/audit@0.1.0",
        }
    }

    /// rotor's own interfaces the world imports (type-only interfaces included).
    fn rotor_imports(self) -> &'static [&'static str] {
        match self {
            World::Rotator => &[
                "kv",
                "kv-types",
                "wallet-store",
                "wallet-types",
                "journal",
                "journal-types",
                "report",
                "types",
            ],
            World::Auditor => &[
                "kv-reader",
                "kv-types",
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
        if let Some(interface) = name.strip_prefix("rotor:kek/").and_then(|rest| rest.strip_suffix("@0.1.0"))
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
        Inspection { sha256: sha256.to_owned(), bytes, world, imports, exports, refused_imports }
    }

    /// `Ok` if the component targets `expected` and imports nothing the world does not grant.
    pub fn require(&self, origin: &str, expected: World) -> anyhow::Result<()> {
        match self.world {
            Some(world) if world == expected => {}
            Some(world) => anyhow::bail!(
                "component {origin} targets {}, but this command runs {} components",
                world.name(),
                expected.name()
            ),
            None => anyhow::bail!(
                "component {origin} exports neither rotor:kek/operations nor rotor:kek/audit: it was not \
                 built against rotor's WIT (wit/rotor.wit); it exports: {}",
                if self.exports.is_empty() { "nothing".into() } else { self.exports.join(", ") }
            ),
        }
        anyhow::ensure!(
            self.refused_imports.is_empty(),
            "component {origin} imports {}, which the {} world does not grant: refused",
            self.refused_imports.join(", "),
            expected.name()
        );
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
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::World;

    #[test]
    fn the_auditor_world_grants_no_write_interface() {
        assert!(World::Auditor.grants_import("rotor:kek/kv-reader@0.1.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/kv@0.1.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/wallet-store@0.1.0"));
        assert!(!World::Auditor.grants_import("rotor:kek/journal@0.1.0"));
        assert!(World::Rotator.grants_import("rotor:kek/kv@0.1.0"));
        assert!(World::Rotator.grants_import("wasi:random/random@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:sockets/tcp@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:filesystem/preopens@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:clocks/wall-clock@0.2.6"));
        assert!(!World::Rotator.grants_import("wasi:http/outgoing-handler@0.2.6"));
        assert!(!World::Rotator.grants_import("rotor:kek/kv@0.2.0"));
    }
}
