//! Split DWARF (gcc `-gsplit-dwarf`): the units a skeleton points at, in a `.dwo` beside
//! the build or in a `<file>.dwp` package, linked to the file's own sections.

use std::{path::Path, sync::Arc};

use gimli::{EndianArcSlice, Reader as _, RunTimeEndian};
use object::{Object as _, ObjectSection as _};

use super::R;

/// The `.dwo` of each skeleton unit (gcc `-gsplit-dwarf`), found by its `DW_AT_dwo_name`
/// beside the compilation directory or the file; units whose `.dwo` is missing are left
/// out (their functions are then "not described").
pub(super) fn load_splits(
    dwarf: &gimli::Dwarf<R>,
    binary: &Path,
    endian: RunTimeEndian,
) -> Vec<(gimli::DebugInfoOffset, gimli::Dwarf<R>)> {
    let mut splits = Vec::new();
    // A package of them (`dwp`): `<binary>.dwp`, looked up by each skeleton's dwo id.
    let package = load_package(binary, endian);
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(offset) = header.offset().as_debug_info_offset() else {
            continue;
        };
        let Ok(unit) = dwarf.unit(header) else {
            continue;
        };
        if let (Some(package), Some(id)) = (&package, unit.dwo_id)
            && let Ok(Some(dwo)) = package.find_cu(id, dwarf)
        {
            splits.push((offset, dwo));
            continue;
        }
        let Ok(Some(name)) = unit.dwo_name() else {
            continue;
        };
        let Ok(name) = dwarf.attr_string(&unit, name) else {
            continue;
        };
        let name = name.to_string_lossy().unwrap_or_default().into_owned();
        let comp_dir = unit
            .comp_dir
            .as_ref()
            .and_then(|d| d.to_string_lossy().ok().map(|d| d.into_owned()));
        let candidates = [
            comp_dir.map(|d| Path::new(&d).join(&name)),
            binary
                .parent()
                .map(|d| d.join(Path::new(&name).file_name().unwrap_or_default())),
        ];
        let Some(data) = candidates
            .into_iter()
            .flatten()
            .find_map(|p| crate::files::read_regular(&p, 1 << 31).ok())
        else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        let Ok(mut dwo) = gimli::Dwarf::load(|id| dwo_section(&file, id, endian)) else {
            continue;
        };
        dwo.make_dwo(dwarf);
        splits.push((offset, dwo));
    }
    splits
}

fn load_package(binary: &Path, endian: RunTimeEndian) -> Option<gimli::DwarfPackage<R>> {
    let mut path = binary.as_os_str().to_owned();
    path.push(".dwp");
    let data = crate::files::read_regular(Path::new(&path), 1 << 31).ok()?;
    let file = object::File::parse(&*data).ok()?;
    gimli::DwarfPackage::load(
        |id| dwo_section(&file, id, endian),
        EndianArcSlice::new(Arc::from(&[][..]), endian),
    )
    .ok()
}

/// Section `id` of a `.dwo` or `.dwp` file, by its `.dwo` name; empty when absent.
fn dwo_section(
    file: &object::File<'_>,
    id: gimli::SectionId,
    endian: RunTimeEndian,
) -> Result<R, gimli::Error> {
    let bytes: Arc<[u8]> = id
        .dwo_name()
        .and_then(|n| file.section_by_name(n))
        .and_then(|s| s.uncompressed_data().ok())
        .map_or_else(|| Arc::from(&[][..]), |d| Arc::from(d.as_ref()));
    Ok(EndianArcSlice::new(bytes, endian))
}
