//! `vkstats FILE.wgsl… [--set NAME=0|1]… [--ir DIR]`: compiles each WGSL kernel (as `tilegemm devices --emit`
//! writes them) to SPIR-V the way wgpu does for tilegemm's pipelines (overrides applied by naga, no
//! runtime checks, no workgroup-memory zeroing), builds a Vulkan compute pipeline from it with
//! statistics captured, and prints what the driver reports (on NVIDIA: registers, among others).
//! Overrides a kernel does not declare are ignored; unset ones keep the source's defaults. With
//! `--ir DIR`, the internal representations the driver offers (if any) go to DIR, one file each.

use ash::vk;
use std::collections::BTreeMap;
use std::ffi::CStr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    let mut settings = BTreeMap::new();
    let mut ir_dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--set" {
            let setting = args.next().ok_or("--set needs NAME=VALUE")?;
            let (name, value) = setting.split_once('=').ok_or("--set needs NAME=VALUE")?;
            settings.insert(name.to_string(), value.parse::<f64>()?);
        } else if arg == "--ir" {
            ir_dir = Some(std::path::PathBuf::from(
                args.next().ok_or("--ir needs DIR")?,
            ));
        } else {
            files.push(arg);
        }
    }
    let vulkan = Vulkan::new()?;
    println!("device: {}", vulkan.device_name);
    for file in &files {
        let name = std::path::Path::new(file)
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let source = std::fs::read_to_string(file)?;
        let stats = spirv(&source, &settings)
            .map_err(|e| e.into())
            .and_then(|(words, layout)| {
                vulkan.statistics(&words, &layout, ir_dir.as_deref().map(|d| (d, &*name)))
            });
        match stats {
            Ok(stats) => println!("{name} {}", stats.join("; ")),
            Err(e) => println!("{name} failed: {e}"),
        }
    }
    Ok(())
}

/// The descriptor type of each binding of a kernel (all in group 0), in binding order.
type Layout = Vec<(u32, vk::DescriptorType)>;

/// The kernel's SPIR-V with `settings` applied to the overrides it declares, and its bindings.
fn spirv(source: &str, settings: &BTreeMap<String, f64>) -> Result<(Vec<u32>, Layout), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    let declared: Vec<String> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.clone())
        .collect();
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in settings {
        if declared.contains(name) {
            constants.insert(name.clone(), *value);
        }
    }
    let entry = Some((naga::ShaderStage::Compute, "main"));
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, entry, &constants)
            .map_err(|e| e.to_string())?;
    // What wgpu-hal's Vulkan backend uses for a module made with ShaderRuntimeChecks::unchecked()
    // and a pipeline without workgroup-memory zeroing (tilegemm's `build_cached`).
    let unchecked = naga::proc::BoundsCheckPolicy::Unchecked;
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        flags: naga::back::spv::WriterFlags::LABEL_VARYINGS
            | naga::back::spv::WriterFlags::FORCE_POINT_SIZE,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: unchecked,
            buffer: unchecked,
            image_load: unchecked,
            binding_array: unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: false,
        ray_query_initialization_tracking: false,
        emit_int_div_checks: false,
        task_dispatch_limits: None,
        mesh_shader_primitive_indices_clamp: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: "main".to_string(),
    };
    let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
        .map_err(|e| e.to_string())?;
    let mut layout: Layout = module
        .global_variables
        .iter()
        .filter_map(|(_, var)| {
            let binding = var.binding.as_ref()?;
            let kind = match var.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                _ => vk::DescriptorType::STORAGE_BUFFER,
            };
            Some((binding.binding, kind))
        })
        .collect();
    layout.sort_by_key(|&(binding, _)| binding);
    Ok((words, layout))
}

/// An internal representation's name and contents.
type NamedBytes = (String, Vec<u8>);

/// A Vulkan device with VK_KHR_pipeline_executable_properties enabled.
struct Vulkan {
    _entry: ash::Entry,
    device: ash::Device,
    executables: ash::khr::pipeline_executable_properties::Device,
    device_name: String,
}

impl Vulkan {
    /// The first physical device that offers the extension (the NVIDIA GPU on the GPU host).
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let entry = unsafe { ash::Entry::load()? };
        let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
        let instance = unsafe {
            entry.create_instance(
                &vk::InstanceCreateInfo::default().application_info(&app),
                None,
            )?
        };
        let extension = ash::khr::pipeline_executable_properties::NAME;
        let physical = unsafe { instance.enumerate_physical_devices()? }
            .into_iter()
            .find(|&pd| {
                unsafe { instance.enumerate_device_extension_properties(pd) }
                    .unwrap_or_default()
                    .iter()
                    .any(|e| e.extension_name_as_c_str() == Ok(extension))
            })
            .ok_or("no Vulkan device offers VK_KHR_pipeline_executable_properties")?;
        let properties = unsafe { instance.get_physical_device_properties(physical) };
        let device_name = properties
            .device_name_as_c_str()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let family = unsafe { instance.get_physical_device_queue_family_properties(physical) }
            .iter()
            .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            .ok_or("no compute queue")? as u32;
        let priorities = [1.0];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let extensions = [extension.as_ptr()];
        let mut features = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
            .pipeline_executable_info(true);
        let create = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&extensions)
            .push_next(&mut features);
        let device = unsafe { instance.create_device(physical, &create, None)? };
        let executables = ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
        Ok(Vulkan {
            _entry: entry,
            device,
            executables,
            device_name,
        })
    }

    /// "name = value" for every statistic of every executable of a compute pipeline of `words`;
    /// with `ir` (a folder and the kernel's name), its internal representations written there.
    fn statistics(
        &self,
        words: &[u32],
        layout: &Layout,
        ir: Option<(&std::path::Path, &str)>,
    ) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let device = &self.device;
        let bindings: Vec<_> = layout
            .iter()
            .map(|&(binding, kind)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(binding)
                    .descriptor_type(kind)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        unsafe {
            let set_layout = device.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
                None,
            )?;
            let set_layouts = [set_layout];
            let pipeline_layout = device.create_pipeline_layout(
                &vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts),
                None,
            )?;
            let module = device
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(words), None)?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let create = vk::ComputePipelineCreateInfo::default()
                .flags(if ir.is_some() {
                    vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                        | vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR
                } else {
                    vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR
                })
                .stage(stage)
                .layout(pipeline_layout);
            let pipeline = device
                .create_compute_pipelines(vk::PipelineCache::null(), &[create], None)
                .map_err(|(_, e)| e)?[0];
            let mut lines = Vec::new();
            let info = vk::PipelineInfoKHR::default().pipeline(pipeline);
            let executables = self.executables.get_pipeline_executable_properties(&info)?;
            for index in 0..executables.len() as u32 {
                let executable = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(pipeline)
                    .executable_index(index);
                for stat in self
                    .executables
                    .get_pipeline_executable_statistics(&executable)?
                {
                    let name = stat
                        .name_as_c_str()
                        .map(CStr::to_string_lossy)
                        .unwrap_or_default();
                    let value = match stat.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                            (stat.value.b32 != 0).to_string()
                        }
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => {
                            stat.value.i64.to_string()
                        }
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => {
                            stat.value.u64.to_string()
                        }
                        _ => stat.value.f64.to_string(),
                    };
                    lines.push(format!("{name} = {value}"));
                }
                if let Some((dir, kernel)) = ir {
                    for (name, data) in self.internal_representations(&executable)? {
                        let file = dir.join(format!("{kernel}.{index}.{name}.txt"));
                        std::fs::write(&file, data)?;
                        lines.push(format!("ir {}", file.display()));
                    }
                }
            }
            device.destroy_pipeline(pipeline, None);
            device.destroy_shader_module(module, None);
            device.destroy_pipeline_layout(pipeline_layout, None);
            device.destroy_descriptor_set_layout(set_layout, None);
            Ok(lines)
        }
    }

    /// The executable's internal representations, (name, bytes), fetched in the extension's two
    /// calls: sizes first, then the data into buffers of those sizes.
    unsafe fn internal_representations(
        &self,
        executable: &vk::PipelineExecutableInfoKHR,
    ) -> Result<Vec<NamedBytes>, Box<dyn std::error::Error>> {
        let sized = self
            .executables
            .get_pipeline_executable_internal_representations(executable)?;
        let mut buffers: Vec<Vec<u8>> = sized.iter().map(|r| vec![0u8; r.data_size]).collect();
        let mut requests: Vec<_> = buffers
            .iter_mut()
            .map(|buffer| vk::PipelineExecutableInternalRepresentationKHR {
                data_size: buffer.len(),
                p_data: buffer.as_mut_ptr().cast(),
                ..Default::default()
            })
            .collect();
        let mut count = requests.len() as u32;
        (self
            .executables
            .fp()
            .get_pipeline_executable_internal_representations_khr)(
            self.device.handle(),
            executable,
            &mut count,
            requests.as_mut_ptr(),
        )
        .result()?;
        let names = requests.iter().map(|r| {
            r.name_as_c_str()
                .map(|n| {
                    n.to_string_lossy()
                        .replace(|c: char| !c.is_alphanumeric(), "_")
                })
                .unwrap_or_default()
        });
        Ok(names.zip(buffers).collect())
    }
}
