//! Whether a component's imports and exports have the types of rotor's world, not only its
//! names.
//!
//! Imports are checked by wasmtime itself: the component is linked with the linker the commands
//! build (WASI and `capabilities::add_to_linker`), so `inspect` accepts exactly what they can
//! run. When that fails, each of rotor's import functions is linked alone (every other one
//! stubbed) so that every misfit is named, not only the first. Exports are compared function by
//! function with rotor's own component for the world, which `build.rs` builds from the same
//! `wit/rotor.wit` the host's bindings come from.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, Linker};

use crate::capabilities::{self, RunState};
use crate::inspect::{Misfit, Side, World};

/// The linker a command links a component of `world` with.
pub fn world_linker(engine: &Engine, world: World) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = Linker::<RunState>::new(engine);
    // A guest built with std imports wasi:cli, wasi:io, wasi:clocks and wasi:random;
    // RunState grants it no directories, environment, arguments or stdio, and the world
    // check refuses sockets, so randomness and clocks are all it gets in practice.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    capabilities::add_to_linker(&mut linker, world)?;
    Ok(linker)
}

/// Everything in `component`'s imports and exports that does not fit `world`. `reference` is
/// rotor's own component for the world; `None` when `component` is that component.
pub fn misfits(
    engine: &Engine,
    component: &Component,
    world: World,
    reference: Option<&Component>,
) -> Vec<Misfit> {
    let mut misfits = import_misfits(engine, component, world, reference);
    if let Some(reference) = reference {
        misfits.extend(export_misfits(engine, component, reference));
    }
    misfits
}

/// The functions of rotor's own interfaces that `component` imports: (interface, name, type).
fn rotor_imports(engine: &Engine, component: &Component) -> Vec<(String, String, ComponentFunc)> {
    let ty = component.component_type();
    let mut functions = Vec::new();
    for (interface, import) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else { continue };
        if !interface.starts_with("rotor:kek/") {
            continue;
        }
        for (name, item) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(func) = item.ty {
                functions.push((interface.to_owned(), name.to_owned(), func));
            }
        }
    }
    functions
}

fn import_misfits(
    engine: &Engine,
    component: &Component,
    world: World,
    reference: Option<&Component>,
) -> Vec<Misfit> {
    let linked = world_linker(engine, world).and_then(|linker| linker.instantiate_pre(component));
    let Err(error) = linked else { return Vec::new() };
    // An import the world does not grant is refused by its name already (`Inspection`), and
    // would fail every check below.
    let ty = component.component_type();
    if ty.imports(engine).any(|(name, _)| !world.grants_import(name)) {
        return Vec::new();
    }
    let whole = |error: &wasmtime::Error| Misfit {
        side: Side::Import,
        interface: None,
        function: None,
        declared: None,
        expected: None,
        reason: chain(error),
    };
    // With every one of rotor's functions stubbed, what still fails is elsewhere (WASI, a
    // resource): say what wasmtime says, as checking one function alone would blame them all.
    let functions = rotor_imports(engine, component);
    let stubbed = linker_with_one_real_function(engine, world, &functions, None)
        .and_then(|linker| linker.instantiate_pre(component));
    if let Err(error) = stubbed {
        return vec![whole(&error)];
    }
    let mut misfits = Vec::new();
    for (index, (interface, name, func)) in functions.iter().enumerate() {
        let alone = linker_with_one_real_function(engine, world, &functions, Some(index))
            .and_then(|linker| linker.instantiate_pre(component));
        if let Err(error) = alone {
            misfits.push(Misfit {
                side: Side::Import,
                interface: Some(interface.clone()),
                function: Some(name.clone()),
                declared: Some(signature(func)),
                expected: reference.and_then(|r| imported_function(engine, r, interface, name)),
                reason: reason(&error),
            });
        }
    }
    if misfits.is_empty() {
        misfits.push(whole(&error));
    }
    misfits
}

/// The world's linker in which, of rotor's functions the component imports, only
/// `functions[real]` (if any) is the host's: every other one is a stub that accepts any type
/// (and traps if called, which it never is: nothing is instantiated).
fn linker_with_one_real_function(
    engine: &Engine,
    world: World,
    functions: &[(String, String, ComponentFunc)],
    real: Option<usize>,
) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = world_linker(engine, world)?;
    linker.allow_shadowing(true);
    for (index, (interface, name, _)) in functions.iter().enumerate() {
        if Some(index) != real {
            linker
                .instance(interface)?
                .func_new(name, |_, _, _, _| wasmtime::bail!("a stub of the type check was called"))?;
        }
    }
    Ok(linker)
}

/// `interface.name` as `reference` imports it, if it does.
fn imported_function(engine: &Engine, reference: &Component, interface: &str, name: &str) -> Option<String> {
    let ty = reference.component_type();
    let ComponentItem::ComponentInstance(instance) = ty.get_import(engine, interface)?.ty else {
        return None;
    };
    match instance.get_export(engine, name)?.ty {
        ComponentItem::ComponentFunc(func) => Some(signature(&func)),
        _ => None,
    }
}

/// Every function the reference exports that `component` lacks or types differently: the
/// functions rotor's commands call.
fn export_misfits(engine: &Engine, component: &Component, reference: &Component) -> Vec<Misfit> {
    let (ours, theirs) = (reference.component_type(), component.component_type());
    let mut misfits = Vec::new();
    for (interface, export) in ours.exports(engine) {
        let ComponentItem::ComponentInstance(expected) = export.ty else { continue };
        let misfit = |function: &str, declared: Option<String>, expected: String, reason: &str| Misfit {
            side: Side::Export,
            interface: Some(interface.to_owned()),
            function: Some(function.to_owned()),
            declared,
            expected: Some(expected),
            reason: reason.to_owned(),
        };
        let declared = match theirs.get_export(engine, interface).map(|e| e.ty) {
            Some(ComponentItem::ComponentInstance(declared)) => Some(declared),
            _ => None,
        };
        for (name, item) in expected.exports(engine) {
            let ComponentItem::ComponentFunc(wanted) = item.ty else { continue };
            let found = declared.as_ref().and_then(|d| d.get_export(engine, name)).map(|e| e.ty);
            match found {
                Some(ComponentItem::ComponentFunc(func)) => {
                    if let Some(reason) = difference(&wanted, &func) {
                        misfits.push(misfit(name, Some(signature(&func)), signature(&wanted), reason));
                    }
                }
                Some(_) => {
                    misfits.push(misfit(name, None, signature(&wanted), "exported, but not as a function"))
                }
                None => misfits.push(misfit(name, None, signature(&wanted), "not exported: rotor calls it")),
            }
        }
    }
    misfits
}

/// What differs between the function rotor calls and the one the component exports, if
/// anything. Parameter names do not matter to a call; types do, compared by [`same`].
fn difference(wanted: &ComponentFunc, found: &ComponentFunc) -> Option<&'static str> {
    let all_same =
        |a: Vec<Type>, b: Vec<Type>| a.len() == b.len() && a.iter().zip(&b).all(|(a, b)| same(a, b));
    let params = |f: &ComponentFunc| f.params().map(|(_, ty)| ty).collect::<Vec<_>>();
    if !all_same(params(wanted), params(found)) {
        return Some("its parameters differ");
    }
    if !all_same(wanted.results().collect(), found.results().collect()) {
        return Some("its result differs");
    }
    if wanted.async_() != found.async_() {
        return Some("one is async, the other not");
    }
    None
}

/// Whether two types have the same shape: names of fields, cases and flags included. Handles
/// compare by kind (own or borrow) only: two components' resource types cannot be compared
/// before instantiation (wasmtime's own equality needs the instances), and which resource an
/// export takes is checked by wasmtime when the bindings look the export up.
fn same(a: &Type, b: &Type) -> bool {
    let both = |a: Option<Type>, b: Option<Type>| match (a, b) {
        (Some(a), Some(b)) => same(&a, &b),
        (None, None) => true,
        _ => false,
    };
    match (a, b) {
        (Type::List(a), Type::List(b)) => same(&a.ty(), &b.ty()),
        (Type::Option(a), Type::Option(b)) => same(&a.ty(), &b.ty()),
        (Type::Result(a), Type::Result(b)) => both(a.ok(), b.ok()) && both(a.err(), b.err()),
        (Type::Tuple(a), Type::Tuple(b)) => {
            a.types().len() == b.types().len() && a.types().zip(b.types()).all(|(a, b)| same(&a, &b))
        }
        (Type::Record(a), Type::Record(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields().zip(b.fields()).all(|(a, b)| a.name == b.name && same(&a.ty, &b.ty))
        }
        (Type::Variant(a), Type::Variant(b)) => {
            a.cases().len() == b.cases().len()
                && a.cases().zip(b.cases()).all(|(a, b)| a.name == b.name && both(a.ty, b.ty))
        }
        (Type::Enum(a), Type::Enum(b)) => a.names().eq(b.names()),
        (Type::Flags(a), Type::Flags(b)) => a.names().eq(b.names()),
        (Type::Own(_), Type::Own(_)) | (Type::Borrow(_), Type::Borrow(_)) => true,
        (Type::Future(_) | Type::Stream(_), _) | (_, Type::Future(_) | Type::Stream(_)) => false,
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// Why wasmtime refused one function: the causes below its own "instance export `f` has the
/// wrong type", which the misfit already names.
fn reason(error: &wasmtime::Error) -> String {
    let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
    match causes.iter().position(|cause| cause.ends_with("has the wrong type")) {
        Some(at) if at + 1 < causes.len() => causes[at + 1..].join(": "),
        _ => causes.join(": "),
    }
}

fn chain(error: &wasmtime::Error) -> String {
    error.chain().map(|cause| cause.to_string()).collect::<Vec<_>>().join(": ")
}

/// A function's type in WIT's words, e.g. `func(id: string) -> result<_, variant{…}>`.
pub fn signature(func: &ComponentFunc) -> String {
    let params: Vec<String> = func.params().map(|(name, ty)| format!("{name}: {}", wit(&ty, 0))).collect();
    let results: Vec<String> = func.results().map(|ty| wit(&ty, 0)).collect();
    let prefix = if func.async_() { "async func" } else { "func" };
    match results.as_slice() {
        [] => format!("{prefix}({})", params.join(", ")),
        [one] => format!("{prefix}({}) -> {one}", params.join(", ")),
        many => format!("{prefix}({}) -> ({})", params.join(", "), many.join(", ")),
    }
}

/// A type in WIT's words. wasmtime's types carry no names for records and variants, so they
/// are spelled out, down to `DEPTH` levels (deeper ones as `record{…}`).
fn wit(ty: &Type, depth: usize) -> String {
    const DEPTH: usize = 2;
    let inner = |ty: &Type| wit(ty, depth + 1);
    let optional = |ty: Option<Type>| ty.map_or("_".to_owned(), |ty| inner(&ty));
    let spelled = |kind: &str, items: Vec<String>| {
        if depth >= DEPTH { format!("{kind}{{…}}") } else { format!("{kind}{{{}}}", items.join(", ")) }
    };
    match ty {
        Type::List(list) => format!("list<{}>", inner(&list.ty())),
        Type::Option(option) => format!("option<{}>", inner(&option.ty())),
        Type::Result(result) => format!("result<{}, {}>", optional(result.ok()), optional(result.err())),
        Type::Tuple(tuple) => {
            format!("tuple<{}>", tuple.types().map(|ty| inner(&ty)).collect::<Vec<_>>().join(", "))
        }
        Type::Record(record) => spelled(
            "record",
            record.fields().map(|field| format!("{}: {}", field.name, inner(&field.ty))).collect(),
        ),
        Type::Variant(variant) => spelled(
            "variant",
            variant
                .cases()
                .map(|case| match case.ty {
                    Some(ty) => format!("{}({})", case.name, inner(&ty)),
                    None => case.name.to_owned(),
                })
                .collect(),
        ),
        Type::Enum(cases) => spelled("enum", cases.names().map(str::to_owned).collect()),
        Type::Flags(flags) => spelled("flags", flags.names().map(str::to_owned).collect()),
        other => primitive(other),
    }
}

fn primitive(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::Own(_) => "own<resource>",
        Type::Borrow(_) => "borrow<resource>",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
        _ => "a type rotor does not name",
    }
    .to_owned()
}
