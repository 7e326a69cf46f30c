using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Metaparticle.Package.Interop
{
    /// <summary>
    /// Writes <see cref="Options"/> as the options JSON of mp_containerize
    /// (seed names, see include/metaparticle.h).
    /// </summary>
    /// <remarks>
    /// Values are written as given, without checking them: the native core
    /// validates every binding's options the same way and names the option in
    /// its message. Unset (null) properties are left out so the core's
    /// defaults apply. Written with <see cref="Utf8JsonWriter"/> rather than
    /// reflection-based serialization, so trimming and Native AOT keep working.
    /// </remarks>
    internal static class OptionsJson
    {
        /// <summary>The option names this binding writes from <see cref="Options"/> properties.</summary>
        internal static readonly IReadOnlySet<string> KnownNames = new HashSet<string>(StringComparer.Ordinal)
        {
            "name", "repository", "tag", "ports", "replicas", "runner", "publish", "public", "shardSpec", "jobSpec",
            "namespace", "env", "files", "baseImage", "dryRun", "keepRunning", "quiet", "command", "include", "workingDir",
            "imagePullSecrets",
        };

        /// <summary>
        /// The JSON for <paramref name="options"/>; with <paramref name="layout"/>
        /// (outside a container) also the command, include paths, working
        /// directory, name and environment defaults that make the image run this
        /// .NET app.
        /// </summary>
        internal static string Serialize(Options options, AppLayout? layout)
        {
            ArgumentNullException.ThrowIfNull(options);
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();

                void Key(string name) => w.WritePropertyName(name);
                void String(string name, string? value)
                {
                    if (value is not null)
                    {
                        Key(name);
                        w.WriteStringValue(value);
                    }
                }
                void Bool(string name, bool value)
                {
                    // false is the core's default for every flag: written anyway,
                    // so the JSON shows what was asked for.
                    Key(name);
                    w.WriteBooleanValue(value);
                }
                void Strings(string name, IEnumerable<string?> values)
                {
                    Key(name);
                    w.WriteStartArray();
                    foreach (string? v in values)
                    {
                        if (v is null)
                        {
                            w.WriteNullValue();
                        }
                        else
                        {
                            w.WriteStringValue(v);
                        }
                    }
                    w.WriteEndArray();
                }

                String("name", options.Name ?? layout?.DefaultName);
                String("repository", options.Repository);
                String("tag", options.Tag);
                if (options.Ports is { Count: > 0 } ports)
                {
                    Key("ports");
                    w.WriteStartArray();
                    foreach (int p in ports)
                    {
                        w.WriteNumberValue(p);
                    }
                    w.WriteEndArray();
                }
                if (options.Replicas is int replicas)
                {
                    Key("replicas");
                    w.WriteNumberValue(replicas);
                }
                String("runner", options.Runner);
                Bool("publish", options.Publish);
                Bool("public", options.Public);
                if (options.ShardSpec is { } shard)
                {
                    Key("shardSpec");
                    w.WriteStartObject();
                    w.WriteNumber("shards", shard.Shards);
                    if (shard.UrlPattern is not null)
                    {
                        w.WriteString("urlPattern", shard.UrlPattern);
                    }
                    w.WriteEndObject();
                }
                if (options.JobSpec is { } job)
                {
                    Key("jobSpec");
                    w.WriteStartObject();
                    w.WriteNumber("count", job.Count);
                    w.WriteEndObject();
                }
                String("namespace", options.Namespace);
                if (options.ImagePullSecrets.Count > 0)
                {
                    Strings("imagePullSecrets", options.ImagePullSecrets);
                }

                // The binding's defaults first, then the user's (which win).
                var env = new SortedDictionary<string, string?>(StringComparer.Ordinal);
                if (layout is not null)
                {
                    foreach (KeyValuePair<string, string> kv in layout.Environment)
                    {
                        env[kv.Key] = kv.Value;
                    }
                }
                if (options.Env is not null)
                {
                    foreach (KeyValuePair<string, string> kv in options.Env)
                    {
                        env[kv.Key] = kv.Value;
                    }
                }
                if (env.Count > 0)
                {
                    Key("env");
                    w.WriteStartObject();
                    foreach (KeyValuePair<string, string?> kv in env)
                    {
                        if (kv.Value is null)
                        {
                            w.WriteNull(kv.Key); // the core says "env.K must be a string"
                        }
                        else
                        {
                            w.WriteString(kv.Key, kv.Value);
                        }
                    }
                    w.WriteEndObject();
                }

                if (options.Files is { Count: > 0 } files)
                {
                    Key("files");
                    w.WriteStartArray();
                    foreach (FileCopy? f in files)
                    {
                        if (f is null)
                        {
                            w.WriteNullValue(); // the core says "files[i] must be an object"
                            continue;
                        }
                        w.WriteStartObject();
                        w.WriteString("src", f.Source);
                        w.WriteString("dest", f.Destination);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                String("baseImage", options.BaseImage);
                Bool("dryRun", options.DryRun);
                Bool("keepRunning", options.KeepRunning);
                Bool("quiet", options.Quiet);

                IList<string>? command = options.Command ?? layout?.Command.ToList();
                if (command is not null)
                {
                    Strings("command", command);
                }
                // The runtime and the app come along with a custom command too
                // (typically the same app with other arguments).
                var include = new List<string?>();
                if (layout is not null)
                {
                    include.AddRange(layout.Include);
                }
                if (options.Include is not null)
                {
                    include.AddRange(options.Include);
                }
                if (include.Count > 0)
                {
                    Strings("include", include);
                }
                String("workingDir", options.WorkingDir ?? layout?.WorkingDir);

                if (options.AdditionalOptions is not null)
                {
                    foreach (KeyValuePair<string, JsonNode?> kv in options.AdditionalOptions)
                    {
                        if (KnownNames.Contains(kv.Key))
                        {
                            throw new ArgumentException(
                                $"Options.AdditionalOptions[\"{kv.Key}\"]: this option is set by the binding; use the Options property for it.",
                                nameof(options));
                        }
                        w.WritePropertyName(kv.Key);
                        if (kv.Value is null)
                        {
                            w.WriteNullValue();
                        }
                        else
                        {
                            kv.Value.WriteTo(w);
                        }
                    }
                }
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        }
    }
}
