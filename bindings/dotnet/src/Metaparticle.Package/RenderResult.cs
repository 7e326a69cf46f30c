using System;
using System.Collections.Generic;
using System.Text.Json;

namespace Metaparticle.Package
{
    /// <summary>
    /// What <see cref="Containerizer.Render(Options)"/> found
    /// <c>Containerize</c> would build and create: the image (reference,
    /// digest, OCI config and manifest) and the runner's objects. The typed
    /// properties cover what tests usually check; <see cref="Json"/> has
    /// everything (the <c>mp_containerize_render</c> document).
    /// </summary>
    public sealed class RenderResult
    {
        private RenderResult(JsonElement json)
        {
            Json = json;
            JsonElement image = Get(json, "image", JsonValueKind.Object);
            ImageReference = Get(image, "reference", JsonValueKind.String).GetString()!;
            ImageDigest = Get(image, "digest", JsonValueKind.String).GetString()!;
            ImageConfig = Get(image, "config", JsonValueKind.Object);
            ImageManifest = Get(image, "manifest", JsonValueKind.Object);

            // The OCI config's "config" member: what the container runs.
            JsonElement run = ImageConfig.TryGetProperty("config", out JsonElement c) && c.ValueKind == JsonValueKind.Object
                ? c
                : default;
            Entrypoint = Strings(run, "Entrypoint");
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string entry in Strings(run, "Env"))
            {
                int eq = entry.IndexOf('=');
                if (eq > 0)
                {
                    env[entry.Substring(0, eq)] = entry.Substring(eq + 1);
                }
            }
            Environment = env;
            var ports = new List<string>();
            if (run.ValueKind == JsonValueKind.Object && run.TryGetProperty("ExposedPorts", out JsonElement exposed) &&
                exposed.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in exposed.EnumerateObject())
                {
                    ports.Add(p.Name);
                }
            }
            ExposedPorts = ports;
            WorkingDir = run.ValueKind == JsonValueKind.Object && run.TryGetProperty("WorkingDir", out JsonElement wd) &&
                         wd.ValueKind == JsonValueKind.String
                ? wd.GetString()!
                : "/";

            var containers = new List<RenderedContainer>();
            if (json.TryGetProperty("docker", out JsonElement docker) && docker.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement d in docker.EnumerateArray())
                {
                    containers.Add(new RenderedContainer(Get(d, "name", JsonValueKind.String).GetString()!,
                                                         Get(d, "body", JsonValueKind.Object)));
                }
            }
            DockerContainers = containers;

            var objects = new List<JsonElement>();
            if (json.TryGetProperty("kubernetes", out JsonElement kube) && kube.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement o in kube.EnumerateArray())
                {
                    objects.Add(o);
                }
            }
            KubernetesObjects = objects;
            Warnings = Strings(json, "warnings");
        }

        /// <summary>The whole rendered document.</summary>
        public JsonElement Json { get; }

        /// <summary>The image reference, <c>repository/name:tag</c>.</summary>
        public string ImageReference { get; }

        /// <summary>The manifest digest, <c>sha256:...</c>. The same inputs give the same digest.</summary>
        public string ImageDigest { get; }

        /// <summary>The OCI image config (<c>config.Entrypoint</c>, <c>config.Env</c>, <c>rootfs</c>, ...).</summary>
        public JsonElement ImageConfig { get; }

        /// <summary>The OCI image manifest (config and layer descriptors).</summary>
        public JsonElement ImageManifest { get; }

        /// <summary>The image's ENTRYPOINT: for a framework-dependent app, the dotnet host, the app's entry .dll, then the arguments.</summary>
        public IReadOnlyList<string> Entrypoint { get; }

        /// <summary>The image's ENV as name → value (includes <c>METAPARTICLE_IN_CONTAINER=true</c>).</summary>
        public IReadOnlyDictionary<string, string> Environment { get; }

        /// <summary>The image's exposed ports, e.g. <c>8080/tcp</c>.</summary>
        public IReadOnlyList<string> ExposedPorts { get; }

        /// <summary>The container's working directory.</summary>
        public string WorkingDir { get; }

        /// <summary>The Docker runner's containers (<c>POST /containers/create</c> bodies), one per replica.</summary>
        public IReadOnlyList<RenderedContainer> DockerContainers { get; }

        /// <summary>The Kubernetes objects, in the order they are applied.</summary>
        public IReadOnlyList<JsonElement> KubernetesObjects { get; }

        /// <summary>What the image builder warned about (e.g. a library it could not find).</summary>
        public IReadOnlyList<string> Warnings { get; }

        /// <summary>The rendered document as indented JSON.</summary>
        public override string ToString()
        {
            using var buffer = new System.IO.MemoryStream();
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions
            {
                Indented = true,
                // Readable output ('+' in media types, '<' in messages); it is not embedded in HTML.
                Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            }))
            {
                Json.WriteTo(writer);
            }
            return System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        }

        internal static RenderResult Parse(string json)
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(json);
                // Clone: the elements must outlive the (pooled) document.
                return new RenderResult(doc.RootElement.Clone());
            }
            catch (Exception e) when (e is JsonException || e is InvalidOperationException || e is KeyNotFoundException)
            {
                throw new MetaparticleException(ErrorCode.Error,
                    "containerize: the native library's render output is not what this binding expects (" + e.Message +
                    "); are Metaparticle.Package and libmetaparticle.so from the same version?", e);
            }
        }

        private static JsonElement Get(JsonElement obj, string name, JsonValueKind kind)
        {
            if (obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement v) && v.ValueKind == kind)
            {
                return v;
            }
            throw new KeyNotFoundException($"\"{name}\" ({kind}) is missing");
        }

        private static IReadOnlyList<string> Strings(JsonElement obj, string name)
        {
            var list = new List<string>();
            if (obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out JsonElement a) && a.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement e in a.EnumerateArray())
                {
                    if (e.ValueKind == JsonValueKind.String)
                    {
                        list.Add(e.GetString()!);
                    }
                }
            }
            return list;
        }
    }

    /// <summary>One container the Docker runner would create.</summary>
    public sealed class RenderedContainer
    {
        internal RenderedContainer(string name, JsonElement body)
        {
            Name = name;
            Body = body;
        }

        /// <summary>The container's name, <c>&lt;name&gt;-&lt;i&gt;</c> (also its hostname).</summary>
        public string Name { get; }

        /// <summary>The Docker Engine API create request (<c>Image</c>, <c>HostConfig.PortBindings</c>, ...).</summary>
        public JsonElement Body { get; }
    }
}
