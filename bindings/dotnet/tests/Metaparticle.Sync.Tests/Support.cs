using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using Xunit;

namespace Metaparticle.Sync.Tests
{
    /// <summary>An mp-sidecar process on 127.0.0.1, started for a test (class) and stopped afterwards.</summary>
    public sealed class Sidecar : IDisposable
    {
        private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
        private readonly Process _process;
        private readonly StringBuilder _log = new StringBuilder();

        private Sidecar(string listen)
        {
            var psi = new ProcessStartInfo(BinaryPath)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add("--listen");
            psi.ArgumentList.Add(listen);
            var firstLine = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            _process = new Process { StartInfo = psi };
            _process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null)
                {
                    firstLine.TrySetException(new InvalidOperationException("mp-sidecar closed stdout before printing its address"));
                    return;
                }
                firstLine.TrySetResult(e.Data);
                Append(e.Data);
            };
            _process.ErrorDataReceived += (_, e) => Append(e.Data);
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();

            if (!firstLine.Task.Wait(StartTimeout))
            {
                Kill();
                throw new InvalidOperationException($"mp-sidecar printed nothing within {StartTimeout}; log:\n{Log}");
            }
            // "mp-sidecar listening on http://127.0.0.1:PORT (backend: memory)"
            Match m = Regex.Match(firstLine.Task.Result, @"listening on (http://\S+)");
            if (!m.Success)
            {
                Kill();
                throw new InvalidOperationException($"unexpected first line from mp-sidecar: '{firstLine.Task.Result}'");
            }
            Url = m.Groups[1].Value;
        }

        /// <summary>The sidecar binary: MP_SIDECAR_BIN, else mp-sidecar on PATH.</summary>
        public static string BinaryPath
        {
            get
            {
                string? fromEnv = Environment.GetEnvironmentVariable("MP_SIDECAR_BIN");
                if (!string.IsNullOrEmpty(fromEnv))
                {
                    if (!File.Exists(fromEnv))
                    {
                        throw new InvalidOperationException($"MP_SIDECAR_BIN={fromEnv} does not exist");
                    }
                    return fromEnv;
                }
                foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
                {
                    string candidate = Path.Combine(dir, "mp-sidecar");
                    if (dir.Length > 0 && File.Exists(candidate))
                    {
                        return candidate;
                    }
                }
                throw new InvalidOperationException(
                    "These tests need the mp-sidecar binary: set MP_SIDECAR_BIN=/path/to/mp-sidecar " +
                    "(built by `cmake --build BUILD --target mp-sidecar`, at BUILD/sidecar/mp-sidecar).");
            }
        }

        /// <summary>Base URL, e.g. http://127.0.0.1:41234.</summary>
        public string Url { get; }

        /// <summary>host:port of <see cref="Url"/>.</summary>
        public string Address => new Uri(Url).Authority;

        /// <summary>What the sidecar printed so far (for failure messages).</summary>
        public string Log
        {
            get
            {
                lock (_log)
                {
                    return _log.ToString();
                }
            }
        }

        public static Sidecar Start() => new Sidecar("127.0.0.1:0");

        /// <summary>Starts a new sidecar on the same address as this (stopped) one.</summary>
        public Sidecar StartAgainOnSameAddress()
        {
            // The port was just released; retry briefly in case the kernel has not let go of it yet.
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    return new Sidecar(Address);
                }
                catch (InvalidOperationException) when (attempt < 20)
                {
                    Thread.Sleep(250);
                }
            }
        }

        /// <summary>Kills the sidecar at once (SIGKILL): nothing is released, as when a pod dies.</summary>
        public void Kill()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                }
                _process.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }
        }

        public void Dispose()
        {
            Kill();
            _process.Dispose();
        }

        private void Append(string? line)
        {
            if (line is null)
            {
                return;
            }
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    /// <summary>One sidecar shared by the tests of a class (each test uses its own lock names).</summary>
    public sealed class SidecarFixture : IDisposable
    {
        public SidecarFixture() => Sidecar = Sidecar.Start();

        public Sidecar Sidecar { get; }

        public void Dispose() => Sidecar.Dispose();
    }

    /// <summary>The test helper program (a second process that uses locks).</summary>
    public sealed class HelperProcess : IDisposable
    {
        private readonly Process _process;
        private readonly BlockingQueue _lines = new BlockingQueue();
        private readonly StringBuilder _stderr = new StringBuilder();

        public HelperProcess(string sidecarUrl, string mode, string lockName)
        {
            string helper = Path.Combine(AppContext.BaseDirectory, "Metaparticle.Sync.TestHelper.dll");
            Assert.True(File.Exists(helper), $"test helper not found at {helper}");
            var psi = new ProcessStartInfo(DotnetHost)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            psi.ArgumentList.Add(helper);
            psi.ArgumentList.Add(mode);
            psi.ArgumentList.Add(lockName);
            psi.Environment["METAPARTICLE_SIDECAR"] = sidecarUrl;
            _process = new Process { StartInfo = psi };
            _process.OutputDataReceived += (_, e) => _lines.Add(e.Data);
            _process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is not null)
                {
                    lock (_stderr)
                    {
                        _stderr.AppendLine(e.Data);
                    }
                }
            };
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        public string Stderr
        {
            get
            {
                lock (_stderr)
                {
                    return _stderr.ToString();
                }
            }
        }

        /// <summary>The next line the helper prints; fails the test if none comes within <paramref name="timeout"/>.</summary>
        public string ReadLine(TimeSpan timeout)
        {
            string? line = _lines.Take(timeout);
            Assert.True(line is not null, $"the helper printed nothing more within {timeout}; stderr:\n{Stderr}");
            return line!;
        }

        public void WriteLine(string line)
        {
            _process.StandardInput.WriteLine(line);
            _process.StandardInput.Flush();
        }

        /// <summary>Waits for the helper to exit and returns its exit code.</summary>
        public int WaitForExit(TimeSpan timeout)
        {
            Assert.True(_process.WaitForExit(timeout), $"the helper did not exit within {timeout}; stderr:\n{Stderr}");
            _process.WaitForExit(); // drain the output
            return _process.ExitCode;
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            _process.Dispose();
        }

        private static string DotnetHost
        {
            get
            {
                // Set by `dotnet test` to the host running it; else the one on PATH.
                string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
                return string.IsNullOrEmpty(host) ? "dotnet" : host;
            }
        }

        /// <summary>Lines from the helper's stdout; null marks the end of the stream.</summary>
        private sealed class BlockingQueue
        {
            private readonly Queue<string?> _items = new Queue<string?>();
            private bool _ended;

            public void Add(string? line)
            {
                lock (_items)
                {
                    if (_ended)
                    {
                        return;
                    }
                    if (line is null)
                    {
                        _ended = true;
                    }
                    _items.Enqueue(line);
                    Monitor.PulseAll(_items);
                }
            }

            public string? Take(TimeSpan timeout)
            {
                DateTime deadline = DateTime.UtcNow + timeout;
                lock (_items)
                {
                    while (_items.Count == 0)
                    {
                        TimeSpan left = deadline - DateTime.UtcNow;
                        if (left <= TimeSpan.Zero || !Monitor.Wait(_items, left))
                        {
                            return null;
                        }
                    }
                    string? line = _items.Peek();
                    if (line is not null)
                    {
                        _items.Dequeue(); // keep the end marker for later calls
                    }
                    return line;
                }
            }
        }
    }

    public static class TestUtil
    {
        /// <summary>A fresh, valid lock name, so tests sharing a sidecar never contend by accident.</summary>
        public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

        /// <summary>
        /// How long a test waits for something that should happen promptly.
        /// Generous on purpose: it bounds a hang, it is not a speed assertion.
        /// </summary>
        public static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

        /// <summary>Polls <paramref name="condition"/> until true or <see cref="Patience"/> passes.</summary>
        public static bool Eventually(Func<bool> condition)
        {
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < Patience)
            {
                if (condition())
                {
                    return true;
                }
                Thread.Sleep(25);
            }
            return condition();
        }

        /// <summary>The sidecar's record of a lock, for failure messages (GET /locks/{name}).</summary>
        public static string DescribeLock(string sidecarUrl, string name)
        {
            try
            {
                using var http = new System.Net.Http.HttpClient { Timeout = TimeSpan.FromSeconds(5) };
                using var response = http.GetAsync($"{sidecarUrl}/locks/{name}").GetAwaiter().GetResult();
                return $"sidecar says {(int)response.StatusCode}: {response.Content.ReadAsStringAsync().GetAwaiter().GetResult()}";
            }
            catch (Exception e)
            {
                return $"(could not ask the sidecar: {e.Message})";
            }
        }

        /// <summary>A 127.0.0.1 URL where nothing listens (a port just bound and closed again).</summary>
        public static string UnusedLocalUrl()
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            return $"http://127.0.0.1:{port}";
        }

        /// <summary>Waits for a task, failing the test instead of hanging if it does not finish in time.</summary>
        public static void Finishes(Task task, string what)
        {
            bool finished = Task.WhenAny(task, Task.Delay(Patience)).GetAwaiter().GetResult() == task;
            Assert.True(finished, $"{what} did not finish within {Patience}");
        }
    }
}
